# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The staged run: open → inspect → preflight (→ convert → copy → output).

Each phase is timed and recorded. Every disk is opened through a qcow2
overlay in a private temporary directory, so the source is never written;
the directory is removed whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v import storage
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.appliance import Appliance, DriveSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.compat import strict_zip
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import SourceError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import OpenedSource, SourceSpec, open_source
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inspect import InspectOptions, inspect_guest_os
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Phase, Result

DEFAULT_WORK_DIR = "/var/tmp"
# A trimmed copy still writes filesystem metadata and partition tables; the
# estimate adds this fraction of the used space for it.
_METADATA_OVERHEAD = 0.02


@dataclass
class PhaseClock:
    """Times the phases of a run, in order."""

    phases: list[Phase] = field(default_factory=list)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.phases.append(Phase(name=name, seconds=round(time.monotonic() - start, 3)))


@dataclass
class OpenedDisk:
    image: storage.ImageInfo
    overlay: storage.Overlay


@contextlib.contextmanager
def open_disks(opened: OpenedSource, work_dir: str | None) -> Iterator[list[OpenedDisk]]:
    """Probe each disk of an opened source safely, at its endpoint, and put a qcow2 overlay over it.

    The probe fills in each source disk's format and size. Whatever serves
    the disks belongs to the opened source and stops when its context ends.
    """
    base = work_dir or DEFAULT_WORK_DIR
    try:
        os.makedirs(base, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix="kvmigrate-open-", dir=base)
    except OSError as exc:
        raise SourceError(f"cannot use the work directory: {exc.strerror}", subject=base,
                          hint="Set work_dir to a writable directory with free space") from exc
    try:
        disks = []
        for index, (disk, endpoint) in enumerate(strict_zip(opened.source.disks, opened.endpoints)):
            image = storage.probe_image(endpoint.path, endpoint.format, offset=endpoint.offset,
                                        length=endpoint.length, parents_in_dir=endpoint.parents_in_dir)
            disk.format = image.format
            disk.size_bytes = image.virtual_size
            overlay = storage.create_overlay(image, os.path.join(tmp, f"disk{index}.qcow2"))
            disks.append(OpenedDisk(image=image, overlay=overlay))
        yield disks
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def estimate_copy(opened: list[OpenedDisk], used_in_filesystems: int | None) -> dict[str, int]:
    """What a copy moves: allocated data, and after trimming free filesystem space."""
    allocated = sum(storage.allocated_bytes(d.image) for d in opened)
    estimate = allocated
    if used_in_filesystems is not None:
        estimate = min(allocated, int(used_in_filesystems * (1 + _METADATA_OVERHEAD)))
    return {"allocated_bytes": allocated, "estimated_bytes": estimate}


def run_inspect(spec: SourceSpec, inspect_options: InspectOptions | None = None, *,
                inspect_os: bool = True) -> Result:
    """inspect_guest: source metadata, then (optionally) OS inspection and preflight."""
    clock = PhaseClock()
    with contextlib.ExitStack() as stack:
        with clock.phase("open"):
            opened_source = stack.enter_context(open_source(spec))
        result = Result(changed=False, source=opened_source.source, phases=clock.phases)
        if not inspect_os:
            return result
        with open_disks(opened_source, spec.work_dir) as disks:
            drives = [DriveSpec(path=d.overlay.path, format="qcow2", readonly=True) for d in disks]
            appliance = Appliance(drives)
            if appliance.decision.warning:
                result.warnings.append(appliance.decision.warning)
            with clock.phase("inspect"), appliance as g:
                inspection = inspect_guest_os(g, inspect_options or InspectOptions())
            used = None
            if inspection.guest is not None:
                used = sum((fs.size_bytes or 0) - (fs.free_bytes or 0)
                           for fs in inspection.guest.filesystems if fs.size_bytes is not None)
            result.estimate = estimate_copy(disks, used)
    result.guest = inspection.guest
    result.findings = inspection.findings
    return result
