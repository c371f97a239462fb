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
import json
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v import storage
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.appliance import (
    Appliance,
    DriveSpec,
    decide_accelerator,
    qemu_accel_args,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.convert.devices import target_disk_name
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.convert.linux import (
    LinuxConvertOptions,
    convert_linux,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.domain_xml import (
    DomainOptions,
    build_domain_xml,
    firmware_of,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import (
    ConversionError,
    OutputError,
    PreflightError,
    V2VError,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.guestnet import fill_missing_macs
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec, load_source
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inspect import InspectOptions, inspect_guest_os
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Plan, Result, Source, TargetDisk
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.libvirt import (
    LibvirtOutputOptions,
    LibvirtOutputPlan,
    plan_libvirt_output,
    start_current_output,
    write_libvirt_output,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.qemu_cmd import (
    build_qemu_command,
    ovmf_files,
    render_shell_script,
)
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

OUTPUTS = ("local", "qemu", "null", "libvirt")
RECORD_VERSION = 1


@dataclass
class ConvertOptions:
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
    output_uri: str = "qemu:///system"
    pool: str = "default"
    start: bool = False
    guest_agent_packages: str | None = None
    rebuild_initramfs: bool = False
    max_concurrent: int | None = None
    slot_dir: str | None = None

    def fingerprint_fields(self) -> dict[str, Any]:
        # Not part of what is converted: forcing, copy parallelism, whether the domain is started, throttling.
        return {k: v for k, v in asdict(self).items()
                if k not in ("force", "parallel", "start", "max_concurrent", "slot_dir")}


def source_fingerprint(spec: SourceSpec, source: Source) -> str:
    """Identity of the source: path, size and modification time of each local file; URI and size of network disks."""
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
    if spec.input == "p2v":
        # A P2V session directory: the machine description and the session's start time identify it.
        session = spec.single_path()
        for name in ("physical.xml", "time"):
            with contextlib.suppress(OSError), open(os.path.join(session, name), "rb") as handle:
                parts.append(f"{name}:{hashlib.sha256(handle.read()).hexdigest()}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class ConversionRun:
    def __init__(self, spec: SourceSpec, options: ConvertOptions, *, check_mode: bool = False) -> None:
        if options.output not in OUTPUTS:
            raise V2VError(f"unknown output {options.output!r}", hint=f"Use one of: {', '.join(OUTPUTS)}")
        if options.output in ("local", "qemu") and not options.output_dir:
            raise V2VError(f"output {options.output!r} needs output_dir")
        if options.guest_agent_packages and not os.path.isdir(options.guest_agent_packages):
            raise V2VError("guest_agent_packages is not a directory", subject=options.guest_agent_packages,
                           hint="Give a directory on the conversion host with the qemu-guest-agent .deb or .rpm "
                                "packages (and their dependencies)")
        self.spec = spec
        self.options = options
        self.check_mode = check_mode
        self.clock = PhaseClock()
        self.result = Result(changed=False, phases=self.clock.phases)
        self.libvirt_plan: LibvirtOutputPlan | None = None
        self.log = ConversionLog(None)
        self.qemu_argv: list[str] | None = None
        self.nvram: tuple[str, str] | None = None  # (VARS template, per-guest copy) for output qemu, UEFI

    # -- where things go -------------------------------------------------
    def _name(self, source: Source) -> str:
        return self.options.name or source.name

    def _target_disks(self, source: Source) -> list[TargetDisk]:
        name = self._name(source)
        bus = "scsi" if self.options.block_driver == "virtio-scsi" else "virtio"
        out_dir = self.options.output_dir or ""
        if self.options.output == "libvirt":
            out_dir = os.path.join(self.spec.work_dir or DEFAULT_WORK_DIR, f"kvmigrate-{name}")
        fmt = self.libvirt_plan.disk_format if self.libvirt_plan else self.options.output_format
        disks = []
        for index, disk in enumerate(source.disks):
            dev = target_disk_name(index, self.options.block_driver)
            path = os.path.join(out_dir, f"{name}-{dev}.{fmt}") if out_dir else ""
            disks.append(TargetDisk(path=path, format=fmt, bus=bus,
                                    size_bytes=disk.size_bytes or 0))
        return disks

    def _record_path(self, source: Source) -> str:
        return os.path.join(self.options.output_dir or "", f".{self._name(source)}.kvmigrate.json")

    def _work_dir(self, source: Source) -> str:
        path = os.path.join(self.spec.work_dir or "/var/tmp", f"kvmigrate-{self._name(source)}")
        os.makedirs(path, exist_ok=True)
        return path

    # -- idempotency -------------------------------------------------------
    def _libvirt_options(self) -> LibvirtOutputOptions:
        return LibvirtOutputOptions(uri=self.options.output_uri, pool=self.options.pool, start=self.options.start,
                                    force=self.options.force)

    def _current_record(self, source: Source, fingerprint: str) -> dict[str, Any] | None:
        if self.options.output in ("null", "libvirt") or self.options.force:
            return None
        try:
            with open(self._record_path(source), encoding="utf-8") as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            return None
        if (record.get("version") != RECORD_VERSION or record.get("fingerprint") != fingerprint
                or record.get("options") != self.options.fingerprint_fields()):
            return None
        for disk in record.get("target", {}).get("disks", []):
            try:
                st = os.stat(disk["path"])
            except OSError:
                return None
            if st.st_mtime_ns != disk.get("mtime_ns"):
                return None
        return record

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
        return self.options.slot_dir or slot_dir_for(self.spec.work_dir or DEFAULT_WORK_DIR)

    def _run(self, ticket: Ticket | None) -> Result:
        with self.clock.phase("open"):
            source = load_source(self.spec)
        self.result.source = source
        fingerprint = source_fingerprint(self.spec, source)
        if self.options.output == "libvirt":
            fingerprint = hashlib.sha256(json.dumps([fingerprint, self.options.fingerprint_fields()],
                                                    sort_keys=True).encode()).hexdigest()
            libvirt_options = self._libvirt_options()
            self.libvirt_plan = plan_libvirt_output(
                libvirt_options, self._name(source), self._target_disks(source), fingerprint,
                output_format=self.options.output_format)
            current = self.libvirt_plan.current
            if current is not None:
                self.result.changed = start_current_output(libvirt_options, current, check_mode=self.check_mode)
                self.result.target = current.to_dict()
                return self.result
        record = self._current_record(source, fingerprint)
        if record is not None:
            self.result.target = record["target"]
            self.result.conversion = record.get("conversion", [])
            return self.result
        # Check mode writes nothing: its status and log stay in memory.
        work = None if self.check_mode else self._work_dir(source)
        status = StatusFile(os.path.join(work, STATUS_FILE) if work else None, self._name(source))
        # At most max_concurrent runs at once (a sliding window): queued before the disks are opened.
        with conversion_slot(self.options.max_concurrent, self._slot_dir(), status, self.clock, ticket):
            self.log = ConversionLog(os.path.join(work, LOG_FILE) if work else None)
            self.result.log_path = self.log.path
            status.update(phase="open", state="running")
            self.log(f"converting {source.name} ({source.input}, {len(source.disks)} disk(s)) to output "
                     f"{self.options.output} as {self._name(source)}")
            try:
                try:
                    self._convert_and_copy(source, fingerprint, status)
                except (RuntimeError, OSError) as exc:
                    # libguestfs raises RuntimeError, the host OSError: the phase and the log say where.
                    phase = status.data.get("phase") or "open"
                    raise ConversionError(f"{phase} failed: {exc}", subject=source.name, phase=phase,
                                          hint="See the conversion log; the source was not changed") from exc
            except V2VError as exc:
                if exc.phase is None:
                    exc.phase = status.data.get("phase")
                exc.log_path = self.log.path
                status.update(state="failed", error=str(exc))
                self.log(f"failed in phase {exc.phase}: {exc}")
                raise
            status.update(state="check" if self.check_mode else "done", percent=100.0 if not self.check_mode else None)
            for phase in self.clock.phases:
                self.log(f"phase {phase.name}: {phase.seconds} s")
            self.log("done")
            return self.result

    def _convert_and_copy(self, source: Source, fingerprint: str, status: StatusFile) -> None:
        with open_disks(source, self.spec.work_dir) as opened:
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
                        g, InspectOptions(root=self.spec.root or "single", luks_keys=list(self.spec.luks_keys)),
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
                self.log(f"inspected: {guest.product_name or guest.distro} (root {guest.root})")
                # A NIC the source describes without a MAC (input disk) gets the guest's own, or a stable one.
                seed = "\n".join(d.path for d in source.disks)
                for index, mac, origin in fill_missing_macs(source.nics, guest.network, seed):
                    self.result.conversion.append(f"gave NIC {index} the MAC {mac} ({origin})")
                targets = self._target_disks(source)
                used = sum((fs.size_bytes or 0) - (fs.free_bytes or 0) for fs in guest.filesystems
                           if fs.size_bytes is not None)
                self.result.estimate = estimate_copy(opened, used)
                domain_xml = self._domain_xml(source, targets, guest)
                if self.options.output == "qemu":
                    # Built before the copy: what qemu cannot run fails here, with nothing written.
                    self.qemu_argv = self._qemu_command(source, targets, guest)
                if self.check_mode:
                    steps = (self.result.conversion + self._planned_steps(guest)
                             + (self.libvirt_plan.steps if self.libvirt_plan else []))
                    self.result.plan = Plan(disks=targets, estimated_bytes=self.result.estimate["estimated_bytes"],
                                            steps=steps, domain_xml=domain_xml)
                    self.result.changed = True
                    return
                status.phase("convert")
                with self.clock.phase("convert"):
                    report = convert_linux(g, guest, source, LinuxConvertOptions(
                        block_driver=self.options.block_driver,
                        guest_agent_packages=self.options.guest_agent_packages,
                        rebuild_initramfs=self.options.rebuild_initramfs, log=self.log))
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
                self._copy(opened, targets, status)
            status.phase("output")
            with self.clock.phase("output"):
                self._write_outputs(source, targets, domain_xml, fingerprint)
        self.result.changed = True

    def _planned_steps(self, guest: Any) -> list[str]:
        steps = []
        if guest.hypervisor_tools:
            steps.append("remove hypervisor tools: " + ", ".join(guest.hypervisor_tools))
        steps += ["rewrite block device names for " + self.options.block_driver,
                  "pin network interface names to their MAC addresses",
                  "add virtio drivers to the initramfs and regenerate the boot menu",
                  "trim filesystems, then copy allocated data as "
                  f"{self.options.output_format} ({self.options.allocation})"]
        return steps

    def _domain_xml(self, source: Source, targets: list[TargetDisk], guest: Any) -> str:
        domain_type = self.options.domain_type or ("kvm" if self._accel() == "kvm" else "qemu")
        serial_log = None
        if self.libvirt_plan is not None:
            domain_type = self.libvirt_plan.domain_type
            # The guest's console history, where libvirt keeps its own logs.
            serial_log = f"/var/log/libvirt/qemu/{self._name(source)}-serial.log"
        return build_domain_xml(source, targets, DomainOptions(
            domain_type=domain_type, name=self._name(source), block_driver=self.options.block_driver,
            networks=dict(self.options.networks), bridges=dict(self.options.bridges),
            serial_log=serial_log), guest)

    @staticmethod
    def _accel() -> str:
        return decide_accelerator().accel

    def _copy(self, opened: list[Any], targets: list[TargetDisk], status: StatusFile) -> None:
        if self.options.output == "null":
            return
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
                    done = sum(t.size_bytes * p / 100.0 for t, p in zip(targets, percents, strict=True))
                    status.update(percent=round(100.0 * done / total, 1))

            target.bytes_written = storage.copy_image(opened[index].overlay.path, target.path + ".part",
                                                      output_format=target.format,
                                                      allocation=self.options.allocation, progress=progress)

        workers = max(1, min(self.options.parallel, len(targets)))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(copy_one, i) for i in range(len(targets))]:
                future.result()

    def _write_outputs(self, source: Source, targets: list[TargetDisk], domain_xml: str, fingerprint: str) -> None:
        target: dict[str, Any] = {"disks": [t.to_dict() for t in targets], "domain_xml": domain_xml}
        if self.options.output == "null":
            self.result.target = target
            return
        if self.options.output == "libvirt":
            self._write_libvirt(source, targets, domain_xml, fingerprint)
            return
        name = self._name(source)
        out_dir = self.options.output_dir or ""
        parts: list[tuple[str, str]] = [(t.path + ".part", t.path) for t in targets]
        xml_path = os.path.join(out_dir, f"{name}.xml")
        with open(xml_path + ".part", "w", encoding="utf-8") as handle:
            handle.write(domain_xml)
        parts.append((xml_path + ".part", xml_path))
        target["xml_path"] = xml_path
        if self.options.output == "qemu":
            argv = self.qemu_argv or []
            if self.nvram is not None:
                template, nvram = self.nvram
                shutil.copyfile(template, nvram + ".part")
                parts.append((nvram + ".part", nvram))
                target["uefi_nvram"] = nvram
            script = os.path.join(out_dir, f"{name}.sh")
            with open(script + ".part", "w", encoding="utf-8") as handle:
                handle.write(render_shell_script(argv))
            os.chmod(script + ".part", 0o755)
            parts.append((script + ".part", script))
            target["qemu_script"] = script
            target["qemu_command"] = argv
        for tmp, final in parts:
            os.replace(tmp, final)
        for disk in target["disks"]:
            disk["mtime_ns"] = os.stat(disk["path"]).st_mtime_ns
        record = {"version": RECORD_VERSION, "fingerprint": fingerprint, "written": time.time(),
                  "options": self.options.fingerprint_fields(), "target": target,
                  "conversion": self.result.conversion}
        record_path = self._record_path(source)
        with open(record_path + ".part", "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=1)
        os.replace(record_path + ".part", record_path)
        self.result.target = target

    def _write_libvirt(self, source: Source, targets: list[TargetDisk], domain_xml: str, fingerprint: str) -> None:
        local = [TargetDisk(path=t.path + ".part", format=t.format, bus=t.bus, size_bytes=t.size_bytes,
                            bytes_written=t.bytes_written) for t in targets]
        try:
            written = write_libvirt_output(self._libvirt_options(), self._name(source), local, domain_xml,
                                           fingerprint)
        finally:
            for disk in local:
                if os.path.exists(disk.path):
                    os.unlink(disk.path)
        self.result.target = written.to_dict()

    def _qemu_command(self, source: Source, targets: list[TargetDisk], guest: Any) -> list[str]:
        """The qemu argv of output qemu; a UEFI guest gets its own copy of the OVMF VARS beside the disks."""
        name = self._name(source)
        options = DomainOptions(domain_type="qemu", name=name, block_driver=self.options.block_driver)
        if firmware_of(source, guest)[0] == "uefi":
            code, template = ovmf_files(firmware_of(source, guest)[1])
            missing = [f for f in (code, template) if not os.path.exists(f)]
            if missing:
                raise OutputError(f"this UEFI guest needs OVMF, and {', '.join(missing)} is missing",
                                  subject=source.name, hint="Install the 'ovmf' package (edk2-ovmf on RHEL)")
            nvram = os.path.join(self.options.output_dir or "", f"{name}-VARS.fd")
            options.uefi_nvram = nvram
            self.nvram = (template, nvram)
        return build_qemu_command(source, targets, options, self._qemu_accel_args(), guest=guest)

    @staticmethod
    def _qemu_accel_args() -> list[str]:
        return qemu_accel_args()


def _remove_partials(run: ConversionRun, source: Source, out_dir: str | None) -> None:
    """Remove every temporary output of a failed run: disks, XML, script, VARS, record."""
    name = run._name(source)
    parts = [t.path + ".part" for t in run._target_disks(source) if t.path]
    if run.options.output_dir:
        parts += [os.path.join(run.options.output_dir, f) + ".part"
                  for f in (f"{name}.xml", f"{name}.sh", f"{name}-VARS.fd")]
        parts.append(run._record_path(source) + ".part")
    for path in parts:
        if os.path.exists(path):
            os.unlink(path)
    if out_dir and os.path.isdir(out_dir) and not os.listdir(out_dir):
        shutil.rmtree(out_dir, ignore_errors=True)


def run_convert(spec: SourceSpec, options: ConvertOptions, *, check_mode: bool = False) -> Result:
    """convert_guest: the whole pipeline; nothing is left behind on failure."""
    if spec.input == "p2v":
        # P2V hook: ``status`` and the conversion log go into the session directory (p2v/server.py).
        from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.p2v.server import reporting

        with reporting(spec.single_path(), check_mode=check_mode) as results:
            results.append(_run_convert(spec, options, check_mode=check_mode))
        return results[0]
    return _run_convert(spec, options, check_mode=check_mode)


def _run_convert(spec: SourceSpec, options: ConvertOptions, *, check_mode: bool = False) -> Result:
    run = ConversionRun(spec, options, check_mode=check_mode)
    created_dir = options.output_dir is not None and not os.path.exists(options.output_dir)
    try:
        return run.run()
    except BaseException:
        source = run.result.source
        if source is not None:
            _remove_partials(run, source, options.output_dir if created_dir else None)
        raise
