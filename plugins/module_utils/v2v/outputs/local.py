# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``output: local``: the converted disks and a libvirt domain XML in ``output_dir``.

Files: ``<name>-vda.<format>`` (one per disk), ``<name>.xml`` (define it with
``virsh define`` or the define_domain module), and the idempotency record
``.<name>.kvmigrate.json``.
"""

from __future__ import annotations

import os
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import TargetDisk
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.base import FileOutput, OutputJob
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.target import TargetHardware


class LocalOutput(FileOutput):
    kind = "local"

    def file_names(self, job: OutputJob) -> list[str]:
        return [f"{job.name}.xml"]

    def prepare_files(self, job: OutputJob, hardware: TargetHardware) -> list[str]:
        return [f"write the domain XML to {os.path.join(self.output_dir, job.name + '.xml')}"]

    def write_files(self, job: OutputJob, disks: list[TargetDisk]) -> dict[str, Any]:
        xml_path = os.path.join(self.output_dir, f"{job.name}.xml")
        self.write_part(xml_path, self.domain_xml)
        return {"xml_path": xml_path}
