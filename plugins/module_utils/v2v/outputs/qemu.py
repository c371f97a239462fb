# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``output: qemu``: what ``local`` writes, plus a shell script that boots the guest with qemu alone.

Files: the disks, ``<name>.xml``, ``<name>.sh`` (executable; extra arguments
are passed to qemu) and, for a UEFI guest, ``<name>-VARS.fd`` (its own copy
of OVMF's variable store). The qemu command is built before the copy, so a
guest qemu cannot run (e.g. UEFI without OVMF installed) fails with nothing
written.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.appliance import qemu_accel_args
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import OutputError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import TargetDisk
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.base import PART, FileOutput, OutputJob
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.qemu_cmd import (
    ovmf_files,
    qemu_argv,
    render_shell_script,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.target import TargetHardware


class QemuOutput(FileOutput):
    kind = "qemu"
    argv: list[str]
    # (VARS template, per-guest copy) for a UEFI guest.
    nvram: tuple[str, str] | None = None

    def file_names(self, job: OutputJob) -> list[str]:
        names = [f"{job.name}.xml", f"{job.name}.sh"]
        if self.nvram is not None:
            names.append(os.path.basename(self.nvram[1]))
        return names

    def _nvram_path(self, job: OutputJob) -> str:
        """A UEFI guest's own copy of the OVMF variable store."""
        return os.path.join(self.output_dir, f"{job.name}-VARS.fd")

    def remove_partials(self, job: OutputJob, *, created_dir: bool) -> None:
        # A failure before prepare() has no nvram decided yet: its .part may still exist.
        path = self._nvram_path(job) + PART
        if os.path.exists(path):
            os.unlink(path)
        super().remove_partials(job, created_dir=created_dir)

    def prepare_files(self, job: OutputJob, hardware: TargetHardware) -> list[str]:
        if hardware.firmware == "uefi":
            code, template = ovmf_files(hardware.secure_boot)
            missing = [f for f in (code, template) if not os.path.exists(f)]
            if missing:
                raise OutputError(f"this UEFI guest needs OVMF, and {', '.join(missing)} is missing",
                                  subject=job.source.name, hint="Install the 'ovmf' package (edk2-ovmf on RHEL)")
            nvram = self._nvram_path(job)
            self.nvram = (template, nvram)
            hardware = dataclasses.replace(hardware, uefi_nvram=nvram)
        # Built before the copy: what qemu cannot run fails here, with nothing written.
        self.argv = qemu_argv(hardware, qemu_accel_args())
        script = os.path.join(self.output_dir, f"{job.name}.sh")
        return [f"write the domain XML and the qemu script {script}"]

    def write_files(self, job: OutputJob, disks: list[TargetDisk]) -> dict[str, Any]:
        target: dict[str, Any] = {}
        xml_path = os.path.join(self.output_dir, f"{job.name}.xml")
        self.write_part(xml_path, self.domain_xml)
        target["xml_path"] = xml_path
        if self.nvram is not None:
            template, nvram = self.nvram
            self.copy_part(template, nvram)
            target["uefi_nvram"] = nvram
        script = os.path.join(self.output_dir, f"{job.name}.sh")
        self.write_part(script, render_shell_script(self.argv), mode=0o755)
        target["qemu_script"] = script
        target["qemu_command"] = self.argv
        return target
