# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The output seam: what every output does, and the file-writing outputs' shared behaviour.

An :class:`Output` is built from the run's options and validates its own
(cheap, before the source is opened). During the run it is asked, in order:

1. :meth:`Output.current` — is this conversion already there? (idempotency:
   ``changed: false`` without starting an appliance);
2. :meth:`Output.target_disks` — where the converted disks go;
3. :meth:`Output.prepare` — render what it will write (XML, qemu command,
   manifest) from the decided :class:`TargetHardware`, before the long copy,
   so that what cannot be written fails with nothing written; returns the
   steps check mode reports;
4. :meth:`Output.write` — after the copy, move everything into place and
   return the result's ``target``;
5. :meth:`Output.remove_partials` — on any failure, remove what it began.

The run orchestrator (``conversion.py``) knows only these calls.
"""

from __future__ import annotations

import abc
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import OutputError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import GuestInfo, Source, TargetDisk
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.target import (
    DomainOptions,
    TargetHardware,
    drive_name,
)

if TYPE_CHECKING:
    from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.conversion import ConvertOptions

RECORD_VERSION = 1
PART = ".part"


def disk_dev(index: int, block_driver: str) -> str:
    """The converted guest's name for disk ``index``: ``vda``... (virtio-blk) or ``sda``... (virtio-scsi)."""
    return drive_name("sd" if block_driver == "virtio-scsi" else "vd", index)


@dataclass
class OutputJob:
    """One conversion as an output sees it.

    ``name``: the converted guest's name; ``fingerprint``: identity of the
    source and of the options that shape the result; ``work_dir``: the run's
    scratch root; ``conversion``: the conversion steps, for the record.
    """

    name: str
    source: Source
    fingerprint: str
    work_dir: str
    check_mode: bool = False
    guest: GuestInfo | None = None
    conversion: list[str] = field(default_factory=list)
    accel: Callable[[], str] = lambda: "kvm"


class Output(abc.ABC):
    """One kind of output; subclasses set ``kind`` and implement the abstract methods."""

    kind: ClassVar[str] = ""
    # False for outputs that write no disks (``null``): the copy phase is skipped.
    copies_disks: ClassVar[bool] = True

    def __init__(self, options: ConvertOptions) -> None:
        self.options = options
        self.validate()

    # -- options ---------------------------------------------------------------------------
    def validate(self) -> None:  # noqa: B027 - most outputs have nothing to check
        """Raise :class:`OutputError` for options this output cannot use (before anything is opened)."""

    def option(self, key: str, default: Any = None) -> Any:
        """An output-specific option (``options.output_options``), ``default`` when unset."""
        value = self.options.output_options.get(key)
        return default if value is None else value

    def fingerprint_fields(self) -> dict[str, Any]:
        """This output's options that shape the result (part of the idempotency fingerprint)."""
        return {}

    def check(self, job: OutputJob) -> None:
        """Cheap checks once the source is known, before the appliance starts: raise :class:`OutputError`
        for a name this output cannot use, or files it would overwrite that it must not."""
        sources = {os.path.realpath(d.path) for d in job.source.disks if "://" not in d.path}
        for disk in self.target_disks(job):
            if disk.path and os.path.realpath(disk.path) in sources:
                raise OutputError(f"the converted disk {disk.path} would overwrite a source disk",
                                  subject=job.source.name,
                                  hint="Choose another output_dir or name: the source is never written")

    # -- the run ---------------------------------------------------------------------------
    def current(self, job: OutputJob) -> tuple[dict[str, Any], list[str], bool] | None:
        """``(target, conversion, changed)`` when this conversion is already in place, else ``None``."""
        return None

    @abc.abstractmethod
    def disk_dir(self, job: OutputJob) -> str:
        """Where the copy writes the converted disks (``""``: nowhere)."""

    def disk_format(self) -> str:
        return str(self.options.output_format)

    def target_disks(self, job: OutputJob) -> list[TargetDisk]:
        """The converted disks: ``<dir>/<name>-<dev>.<format>``, in the source's order (the first boots)."""
        out_dir = self.disk_dir(job)
        fmt = self.disk_format()
        bus = "scsi" if self.options.block_driver == "virtio-scsi" else "virtio"
        disks = []
        for index, disk in enumerate(job.source.disks):
            dev = disk_dev(index, self.options.block_driver)
            path = os.path.join(out_dir, f"{job.name}-{dev}.{fmt}") if out_dir else ""
            disks.append(TargetDisk(path=path, format=fmt, bus=bus, size_bytes=disk.size_bytes or 0))
        return disks

    def domain_options(self, job: OutputJob) -> DomainOptions:
        """How the hardware is described to this output's hypervisor (see :func:`target.decide_hardware`)."""
        domain_type = self.options.domain_type or ("kvm" if job.accel() == "kvm" else "qemu")
        return DomainOptions(domain_type=domain_type, name=job.name, block_driver=self.options.block_driver,
                             networks=dict(self.options.networks), bridges=dict(self.options.bridges))

    @abc.abstractmethod
    def prepare(self, job: OutputJob, hardware: TargetHardware, domain_xml: str) -> list[str]:
        """Render what :meth:`write` will write; raise what would fail. Returns check mode's steps."""

    @abc.abstractmethod
    def write(self, job: OutputJob, disks: list[TargetDisk]) -> dict[str, Any]:
        """Put the copied disks (at ``path + '.part'``) and the rendered files in place; the result's ``target``."""

    def remove_partials(self, job: OutputJob, *, created_dir: bool) -> None:
        """Remove whatever a failed run of this output began. ``created_dir``: the run created ``output_dir``."""
        for disk in self.target_disks(job):
            if disk.path and os.path.exists(disk.path + PART):
                os.unlink(disk.path + PART)


class FileOutput(Output):
    """An output that writes files into ``output_dir``: disks, descriptions, and an idempotency record.

    Everything is written under ``<file>.part`` and renamed into place only
    when all of it is complete; the record ``.<name>.kvmigrate.json`` holds
    the fingerprint, so an identical re-run is ``changed: false``.
    """

    domain_xml = ""

    def validate(self) -> None:
        if not self.options.output_dir:
            raise OutputError(f"output {self.kind!r} needs output_dir",
                              hint="Set output_dir to the directory that receives the converted guest")

    @property
    def output_dir(self) -> str:
        return str(self.options.output_dir)

    def disk_dir(self, job: OutputJob) -> str:
        return self.output_dir

    def record_path(self, job: OutputJob) -> str:
        return os.path.join(self.output_dir, f".{job.name}.kvmigrate.json")

    def file_names(self, job: OutputJob) -> list[str]:
        """The files besides the disks that this output writes (names in ``output_dir``)."""
        return []

    def check(self, job: OutputJob) -> None:
        if os.path.exists(self.output_dir) and not os.path.isdir(self.output_dir):
            raise OutputError("output_dir is not a directory", subject=self.output_dir,
                              hint="Give a directory (it is created when it does not exist)")
        super().check(job)
        names = [os.path.basename(d.path) for d in self.target_disks(job)] + self.file_names(job)
        for name in names:
            path = os.path.join(self.output_dir, name)
            if os.path.isdir(path):
                raise OutputError(f"{path} is a directory where the converted guest's file goes",
                                  subject=job.source.name, hint="Remove it, or choose another output_dir or name")

    def record_options(self) -> dict[str, Any]:
        return {**self.options.fingerprint_fields(), **self.fingerprint_fields()}

    def current(self, job: OutputJob) -> tuple[dict[str, Any], list[str], bool] | None:
        if self.options.force:
            return None
        try:
            with open(self.record_path(job), encoding="utf-8") as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or (
                record.get("version") != RECORD_VERSION or record.get("fingerprint") != job.fingerprint
                or record.get("options") != self.record_options()):
            return None
        target = record.get("target")
        if not isinstance(target, dict):
            return None
        for disk in target.get("disks", []):
            try:
                st = os.stat(disk["path"])
            except (OSError, KeyError, TypeError):
                return None
            if st.st_mtime_ns != disk.get("mtime_ns"):
                return None
        for name in self.file_names(job):
            if not os.path.exists(os.path.join(self.output_dir, name)):
                return None
        conversion = record.get("conversion", [])
        return target, conversion if isinstance(conversion, list) else [], False

    def prepare(self, job: OutputJob, hardware: TargetHardware, domain_xml: str) -> list[str]:
        self.domain_xml = domain_xml
        return self.prepare_files(job, hardware)

    def prepare_files(self, job: OutputJob, hardware: TargetHardware) -> list[str]:
        """Render this output's files (kept until :meth:`write_files`); return check mode's steps."""
        return []

    def write_part(self, path: str, text: str, *, mode: int | None = None) -> None:
        with open(path + PART, "w", encoding="utf-8") as handle:
            handle.write(text)
        if mode is not None:
            os.chmod(path + PART, mode)

    def copy_part(self, source: str, path: str) -> None:
        shutil.copyfile(source, path + PART)

    def write_files(self, job: OutputJob, disks: list[TargetDisk]) -> dict[str, Any]:
        """Write this output's files (besides the disks) as ``.part``; return what goes into ``target``."""
        return {}

    def write(self, job: OutputJob, disks: list[TargetDisk]) -> dict[str, Any]:
        target: dict[str, Any] = {"disks": [d.to_dict() for d in disks], "domain_xml": self.domain_xml}
        target.update(self.write_files(job, disks))
        finals = [d.path for d in disks] + [os.path.join(self.output_dir, n) for n in self.file_names(job)]
        for final in finals:
            os.replace(final + PART, final)
        for disk in target["disks"]:
            disk["mtime_ns"] = os.stat(disk["path"]).st_mtime_ns
        record = {"version": RECORD_VERSION, "fingerprint": job.fingerprint, "written": time.time(),
                  "options": self.record_options(), "target": target, "conversion": job.conversion}
        record_path = self.record_path(job)
        with open(record_path + PART, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=1)
        os.replace(record_path + PART, record_path)
        return target

    def remove_partials(self, job: OutputJob, *, created_dir: bool) -> None:
        super().remove_partials(job, created_dir=created_dir)
        for path in [os.path.join(self.output_dir, n) for n in self.file_names(job)] + [self.record_path(job)]:
            if os.path.exists(path + PART):
                os.unlink(path + PART)
        if created_dir and os.path.isdir(self.output_dir) and not os.listdir(self.output_dir):
            shutil.rmtree(self.output_dir, ignore_errors=True)
