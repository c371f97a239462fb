# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""convert_guest's run: open → inspect → preflight → convert → trim → copy → output.

"Convert first, copy last": every step that can fail on the guest runs in
the overlay before a byte is written to the output. Outputs are written under
temporary names and renamed into place only when everything succeeded, with
a record of the source's fingerprint and the options, so an identical second
run returns ``changed: false`` without starting an appliance.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import os
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v import storage
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.appliance import (
    Appliance,
    DriveSpec,
    decide_accelerator,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.convert import GuestConvertOptions, converter_for
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.domain_xml import domain_xml_text
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import (
    ConversionError,
    OutputError,
    PreflightError,
    V2VError,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import OpenedSource, SourceSpec, open_source
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inspect import InspectOptions, inspect_guest_os
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Plan, Result, Source, TargetDisk
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs import output_for
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.base import PART, Output, OutputJob
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.pipeline import (
    DEFAULT_WORK_DIR,
    PhaseClock,
    estimate_copy,
    open_disks,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.slots import (
    SlotQueue,
    Ticket,
    conversion_slot,
    slot_dir_for,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.status import (
    LOG_FILE,
    STATUS_FILE,
    ConversionLog,
    StatusFile,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.target import decide_hardware


@dataclass
class ConvertOptions:
    """convert_guest's options, except the source and inspection ones.

    ``output_options`` holds what only the chosen output reads (``output_uri``,
    ``pool``, ``start``, ``kubevirt_*``...); the output validates them.
    """

    output: str = "local"
    output_dir: str | None = None
    name: str | None = None
    output_format: str = "raw"
    allocation: str = "sparse"
    networks: dict[str, str] = field(default_factory=dict)
    bridges: dict[str, str] = field(default_factory=dict)
    block_driver: str = "virtio-blk"
    parallel: int = 1
    force: bool = False
    domain_type: str | None = None
    guest_agent_packages: str | None = None
    rebuild_initramfs: bool = False
    max_concurrent: int | None = None
    slot_dir: str | None = None
    output_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ConvertOptions:
        """Options from a module's parameters: every field by its name (unset ones keep their default);
        every other parameter is offered to the output as ``output_options``."""
        names = {f.name for f in fields(cls)} - {"output_options"}
        values = {k: v for k, v in params.items() if k in names and v is not None}
        extra = {k: v for k, v in params.items() if k not in names}
        return cls(**values, output_options=extra)

    def fingerprint_fields(self) -> dict[str, Any]:
        # Not part of what is converted: forcing, copy parallelism, throttling; the output adds its own.
        return {k: v for k, v in asdict(self).items()
                if k not in ("force", "parallel", "max_concurrent", "slot_dir", "output_options")}


def source_fingerprint(spec: SourceSpec, opened: OpenedSource) -> str:
    """Identity of the source: path, size and modification time of each local file; URI and size of network disks;
    and what the input adds (a P2V session's files)."""
    source = opened.source
    files = sorted({os.path.realpath(p) for p in spec.paths if "://" not in p}
                   | {os.path.realpath(d.path) for d in source.disks if "://" not in d.path})
    parts = []
    for path in files:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if os.path.isdir(path):
            continue
        parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    # Disks read over a network cannot be stat'ed: their URI and size stand for them.
    parts += sorted(f"{d.path}:{d.size_bytes}" for d in source.disks if "://" in d.path)
    parts += opened.identity()
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class ConversionRun:
    """One conversion: the phases, in order. Knows no input kind, no guest OS and no output kind:
    those are behind the input, converter and output seams."""

    def __init__(self, spec: SourceSpec, options: ConvertOptions, *, inspect_options: InspectOptions | None = None,
                 check_mode: bool = False) -> None:
        if options.guest_agent_packages and not os.path.isdir(options.guest_agent_packages):
            raise V2VError("guest_agent_packages is not a directory", subject=options.guest_agent_packages,
                           hint="Give a directory on the conversion host with the qemu-guest-agent .deb or .rpm "
                                "packages (and their dependencies)")
        self.spec = spec
        self.options = options
        self.inspect_options = inspect_options or InspectOptions()
        self.check_mode = check_mode
        # The output validates its own options here, before the source is opened.
        self.output: Output = output_for(options)
        self.job: OutputJob | None = None
        self.clock = PhaseClock()
        self.result = Result(changed=False, phases=self.clock.phases)
        self.log = ConversionLog(None)

    # -- where things go -------------------------------------------------
    def _name(self, source: Source) -> str:
        return self.options.name or source.name

    def _work_root(self) -> str:
        return self.spec.work_dir or DEFAULT_WORK_DIR

    def _work_dir(self, source: Source) -> str:
        path = os.path.join(self._work_root(), f"kvmigrate-{self._name(source)}")
        os.makedirs(path, exist_ok=True)
        return path

    # -- the run ---------------------------------------------------------------
    def run(self) -> Result:
        if self.options.max_concurrent is None:
            return self._run(None)
        # The run's place in the queue is taken before its source is opened, so that runs get their slots
        # in the order they started (the migrate role starts the largest sources first), however long
        # each source takes to open.
        with SlotQueue(self._slot_dir(), self.options.max_concurrent).ticket() as ticket:
            return self._run(ticket)

    def _slot_dir(self) -> str:
        return self.options.slot_dir or slot_dir_for(self._work_root())

    def _run(self, ticket: Ticket | None) -> Result:
        # The source stays open (whatever serves its disks keeps running) until the run ends, and the run
        # happens inside the input's hook (P2V reports into its session directory).
        with contextlib.ExitStack() as stack:
            with self.clock.phase("open"):
                opened = stack.enter_context(open_source(self.spec))
            with opened.run_context(self.check_mode) as report:
                report.result = self._run_opened(opened, ticket)
        return self.result

    def _run_opened(self, opened: OpenedSource, ticket: Ticket | None) -> Result:
        source = opened.source
        self.result.source = source
        job = self.job = OutputJob(name=self._name(source), source=source,
                                   fingerprint=source_fingerprint(self.spec, opened), work_dir=self._work_root(),
                                   check_mode=self.check_mode, accel=self._accel)
        self.output.check(job)
        current = self.output.current(job)
        if current is not None:
            self.result.target, self.result.conversion, self.result.changed = current
            return self.result
        # Check mode writes nothing: its status and log stay in memory.
        work = None if self.check_mode else self._work_dir(source)
        status = StatusFile(os.path.join(work, STATUS_FILE) if work else None, job.name)
        # At most max_concurrent runs at once (a sliding window): queued before the disks are opened.
        with conversion_slot(self.options.max_concurrent, self._slot_dir(), status, self.clock, ticket):
            self.log = ConversionLog(os.path.join(work, LOG_FILE) if work else None)
            self.result.log_path = self.log.path
            status.update(phase="open", state="running", output_dir=self.options.output_dir)
            self.log(f"converting {source.name} ({source.input}, {len(source.disks)} disk(s)) to output "
                     f"{self.output.kind} as {job.name}")
            try:
                try:
                    self._convert_and_copy(opened, job, status)
                except (RuntimeError, OSError) as exc:
                    # libguestfs raises RuntimeError, the host OSError: the phase and the log say where.
                    phase = status.data.get("phase") or "open"
                    raise ConversionError(f"{phase} failed: {exc}", subject=source.name, phase=phase,
                                          hint="See the conversion log; the source was not changed") from exc
            except V2VError as exc:
                if exc.phase is None:
                    exc.phase = status.data.get("phase")
                exc.log_path = self.log.path
                status.fail(exc)
                self.log(f"failed in phase {exc.phase}: {exc}")
                raise
            status.update(state="check" if self.check_mode else "done", percent=100.0 if not self.check_mode else None)
            for phase in self.clock.phases:
                self.log(f"phase {phase.name}: {phase.seconds} s")
            self.log("done")
            return self.result

    def _convert_and_copy(self, opened_source: OpenedSource, job: OutputJob, status: StatusFile) -> None:
        source = job.source
        with open_disks(opened_source, self.spec.work_dir) as opened:
            writable = not self.check_mode
            drives = [DriveSpec(path=d.overlay.path, format="qcow2", readonly=not writable, discard=writable)
                      for d in opened]
            appliance = Appliance(drives)
            if appliance.decision.warning:
                self.result.warnings.append(appliance.decision.warning)
            with appliance as g:
                status.phase("inspect")
                with self.clock.phase("inspect"):
                    inspection = inspect_guest_os(
                        g, self.inspect_options,
                        mount_readonly=not writable, look_in_initramfs=False)
                self.result.guest = inspection.guest
                self.result.findings = inspection.findings
                status.phase("preflight")
                with self.clock.phase("preflight"):
                    blockers = [f for f in inspection.findings if f.is_blocker]
                    if blockers:
                        raise PreflightError(blockers, subject=source.name)
                guest = inspection.guest
                if guest is None:
                    raise PreflightError(inspection.findings, subject=source.name)
                job.guest = guest
                self.log(f"inspected: {guest.product_name or guest.distro} (root {guest.root})")
                converter = converter_for(guest)
                # E.g. a NIC the source describes without a MAC (input disk) gets the guest's own, or a stable one.
                self.result.conversion += converter.prepare_source(source, guest)
                targets = self.output.target_disks(job)
                used = sum((fs.size_bytes or 0) - (fs.free_bytes or 0) for fs in guest.filesystems
                           if fs.size_bytes is not None)
                self.result.estimate = estimate_copy(opened, used)
                # The hardware is decided once; every output renders it before the copy, so what it cannot
                # write fails here, with nothing written.
                hardware = decide_hardware(source, targets, self.output.domain_options(job), guest)
                domain_xml = domain_xml_text(hardware)
                output_steps = self.output.prepare(job, hardware, domain_xml)
                if self.check_mode:
                    steps = self.result.conversion + self._planned_steps(converter, guest) + output_steps
                    self.result.plan = Plan(disks=targets, estimated_bytes=self.result.estimate["estimated_bytes"],
                                            steps=steps, domain_xml=domain_xml)
                    self.result.changed = True
                    return
                status.phase("convert")
                with self.clock.phase("convert"):
                    report = converter.convert(g, guest, source, self._guest_convert_options())
                self.result.conversion += report.steps
                self.result.network = report.network
                self.result.warnings.extend(report.warnings)
                for line in report.steps:
                    self.log(f"conversion: {line}")
                for line in report.warnings:
                    self.log(f"warning: {line}")
                status.phase("trim")
                with self.clock.phase("trim"):
                    for mountpoint in sorted(guest.mountpoints, key=len, reverse=True):
                        try:
                            g.fstrim(mountpoint)
                        except RuntimeError:
                            continue
                    g.umount_all()
                    g.sync()
            status.phase("copy")
            with self.clock.phase("copy"):
                if self.output.copies_disks:
                    self._copy(opened, targets, status)
            status.phase("output")
            with self.clock.phase("output"):
                job.conversion = list(self.result.conversion)
                self.result.target = self.output.write(job, targets)
        self.result.changed = True

    def _planned_steps(self, converter: Any, guest: Any) -> list[str]:
        steps = list(converter.planned_steps(guest, self._guest_convert_options()))
        if self.output.copies_disks:
            steps.append("trim filesystems, then copy allocated data as "
                         f"{self.options.output_format} ({self.options.allocation})")
        return steps

    def _guest_convert_options(self) -> GuestConvertOptions:
        return GuestConvertOptions(block_driver=self.options.block_driver,
                                   guest_agent_packages=self.options.guest_agent_packages,
                                   rebuild_initramfs=self.options.rebuild_initramfs, log=self.log)

    @staticmethod
    def _accel() -> str:
        return decide_accelerator().accel

    def _copy(self, opened: list[Any], targets: list[TargetDisk], status: StatusFile) -> None:
        out_dir = os.path.dirname(targets[0].path)
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the output directory: {exc.strerror}", subject=out_dir) from exc
        total = sum(t.size_bytes for t in targets) or 1
        percents = [0.0] * len(targets)
        lock = threading.Lock()

        def copy_one(index: int) -> None:
            target = targets[index]

            def progress(percent: float) -> None:
                with lock:
                    percents[index] = percent
                    done = sum(t.size_bytes * percents[i] / 100.0 for i, t in enumerate(targets))
                    status.update(percent=round(100.0 * done / total, 1))

            target.bytes_written = storage.copy_image(opened[index].overlay.path, target.path + PART,
                                                      output_format=target.format,
                                                      allocation=self.options.allocation, progress=progress)

        workers = max(1, min(self.options.parallel, len(targets)))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(copy_one, i) for i in range(len(targets))]:
                future.result()


def run_convert(spec: SourceSpec, options: ConvertOptions, *, inspect_options: InspectOptions | None = None,
                check_mode: bool = False) -> Result:
    """convert_guest: the whole pipeline; nothing is left behind on failure."""
    return _run_convert(spec, options, inspect_options=inspect_options, check_mode=check_mode)


def _run_convert(spec: SourceSpec, options: ConvertOptions, *, inspect_options: InspectOptions | None = None,
                 check_mode: bool = False) -> Result:
    run = ConversionRun(spec, options, inspect_options=inspect_options, check_mode=check_mode)
    created_dir = options.output_dir is not None and not os.path.exists(options.output_dir)
    try:
        return run.run()
    except BaseException:
        if run.job is not None:
            run.output.remove_partials(run.job, created_dir=created_dir)
        raise
