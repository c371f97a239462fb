"""Boot disk images under qemu and report what the guest said on its serial port.

The images are never written: each gets a temporary qcow2 overlay (backing
file opened read-only, backing format explicit) that is deleted afterwards.
Success is the guest's own marker line (see ``vmware_debian.MARKER_SCRIPT``);
failure is recognised early from the signs an initramfs, systemd, GRUB or the
firmware print when a boot goes wrong, and the reason names that line.
At most two qemu processes run at once on this host (``cache.qemu_slot``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.appliance import qemu_accel_args
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.process import require_tool, run_tool

from .cache import log, qemu_slot

MARKER_PREFIX = "KVMIGRATE-MARKER"
DISK_BUSES = ("sata", "ide", "scsi", "pvscsi", "mptsas", "virtio-blk", "virtio-scsi")
NIC_MODELS = {"e1000": "e1000", "e1000e": "e1000e", "vmxnet3": "vmxnet3", "virtio": "virtio-net-pci",
              "rtl8139": "rtl8139"}
_SCSI_HBAS = {"scsi": "lsi53c895a", "pvscsi": "pvscsi", "mptsas": "mptsas1068", "virtio-scsi": "virtio-scsi-pci"}
_OVMF = (("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
         ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
         ("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"))

# (pattern, what it means). Checked on the serial log and the firmware log.
FAILURE_SIGNS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), what) for p, what in (
    (r"Gave up waiting for (root|suspend/resume) (file system )?device", "root device not found"),
    (r"ALERT!\s+\S+ does not exist", "root device not found"),
    (r"Warning: /dev/\S+ does not exist", "root device not found"),
    (r"dracut-initqueue\[\d+\]: Warning: dracut-initqueue: starting timeout scripts", "root device not found"),
    (r"\(initramfs\)", "dropped to the initramfs shell"),
    (r"dracut:/#", "dropped to the dracut emergency shell"),
    (r"Kernel panic", "kernel panic"),
    (r"You are in emergency mode|Entering emergency mode", "systemd emergency mode"),
    (r"Give root password for maintenance", "systemd emergency mode"),
    (r"grub rescue>", "GRUB rescue shell"),
    (r"Minimal BASH-like line editing is supported", "GRUB shell without a configuration"),
    (r"No bootable device", "the firmware found no bootable device"),
    (r"Boot failed: not a bootable disk", "the firmware found no bootable disk"),
    (r"BdsDxe: No bootable option or device was found", "the firmware found no bootable device"),
))
# After the first failure sign, give the guest this long to print the rest of
# the story (e.g. "ALERT! /dev/sda1 does not exist" after "Gave up waiting").
FAILURE_SETTLE_SECONDS = 4.0
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")


@dataclass(frozen=True)
class MarkerNIC:
    name: str
    mac: str
    addresses: tuple[str, ...]  # "a.b.c.d/len"


@dataclass(frozen=True)
class Marker:
    """The guest's marker line, parsed."""

    hostname: str
    root: str
    nics: tuple[MarkerNIC, ...]
    line: str

    def nic(self, name: str) -> MarkerNIC | None:
        return next((n for n in self.nics if n.name == name), None)

    def addresses(self) -> list[str]:
        return [a for n in self.nics for a in n.addresses]


def parse_marker(line: str) -> Marker:
    """Parse ``KVMIGRATE-MARKER hostname=h root=/dev/x nics=name:aa:bb:cc:dd:ee:ff:addr+addr,...``."""
    text = line[line.index(MARKER_PREFIX):].strip()
    fields = dict(item.split("=", 1) for item in text.split()[1:] if "=" in item)
    nics = []
    raw_nics = fields.get("nics", "-")
    for item in [] if raw_nics == "-" else raw_nics.split(","):
        parts = item.split(":")
        if len(parts) < 8:
            raise ValueError(f"bad NIC entry {item!r} in marker line {text!r}")
        addrs = ":".join(parts[7:])
        nics.append(MarkerNIC(name=parts[0], mac=":".join(parts[1:7]),
                              addresses=() if addrs == "-" else tuple(addrs.split("+"))))
    return Marker(hostname=fields.get("hostname", ""), root=fields.get("root", ""), nics=tuple(nics), line=text)


@dataclass
class BootResult:
    booted: bool
    markers: list[str]
    reason: str
    seconds: float
    log_path: Path  # the serial console log (kept for debugging)
    firmware_log_path: Path | None = None
    argv: list[str] = field(default_factory=list)

    @property
    def marker(self) -> Marker | None:
        return parse_marker(self.markers[0]) if self.markers else None


def _clean(text: str) -> str:
    return _ANSI.sub("", text).replace("\r", "")


def _find_failure(lines: Sequence[str]) -> tuple[str, str] | None:
    for line in lines:
        for pattern, what in FAILURE_SIGNS:
            if pattern.search(line):
                return what, line.strip()
    return None


def _failure_lines(lines: Sequence[str]) -> list[str]:
    seen: list[str] = []
    for line in lines:
        if any(p.search(line) for p, _why in FAILURE_SIGNS) and line.strip() not in seen:
            seen.append(line.strip())
    return seen


def _disk_args(overlays: Sequence[Path], bus: str, machine: str) -> list[str]:
    args: list[str] = []
    if bus == "sata":
        args += ["-device", "ahci,id=sata0"]
    elif bus in _SCSI_HBAS:
        args += ["-device", f"{_SCSI_HBAS[bus]},id=scsi0"]
    elif bus == "ide" and machine != "pc":
        raise ValueError("disk_bus='ide' needs the i440fx machine (machine='pc')")
    for i, overlay in enumerate(overlays):
        args += ["-drive", f"if=none,id=disk{i},file={overlay},format=qcow2,cache=unsafe"]
        boot = ",bootindex=0" if i == 0 else ""
        if bus == "sata":
            if i > 5:
                raise ValueError("an AHCI controller has 6 ports")
            args += ["-device", f"ide-hd,drive=disk{i},bus=sata0.{i}{boot}"]
        elif bus == "ide":
            if i > 3:
                raise ValueError("IDE has 4 positions")
            args += ["-device", f"ide-hd,drive=disk{i},bus=ide.{i // 2},unit={i % 2}{boot}"]
        elif bus == "virtio-blk":
            args += ["-device", f"virtio-blk-pci,drive=disk{i}{boot}"]
        else:
            args += ["-device", f"scsi-hd,drive=disk{i},bus=scsi0.0,channel=0,scsi-id={i},lun=0{boot}"]
    return args


def _nic_args(nic_model: str, mac: str | None, nic_slot: int | None, machine: str) -> list[str]:
    device = NIC_MODELS[nic_model]
    args = ["-netdev", "user,id=net0,restrict=on"]
    opts = f"{device},netdev=net0"
    if mac:
        opts += f",mac={mac}"
    if nic_slot is not None:
        if machine == "q35":
            # A PCIe root port with this physical slot number: the guest names
            # the NIC ens<slot>, as on VMware (vmxnet3 at slot 192 -> ens192).
            # Native PCIe hotplug (not ACPI's) makes the kernel register the slot.
            args += ["-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",
                     "-device", f"pcie-root-port,id=nicport,chassis=1,slot={nic_slot},bus=pcie.0"]
            opts += ",bus=nicport"
        else:
            opts += f",addr={nic_slot:#x}"
    return [*args, "-device", opts]


def _firmware_args(firmware: str, workdir: Path) -> list[str]:
    if firmware == "bios":
        return []
    for code, vars_template in _OVMF:
        if os.path.exists(code) and os.path.exists(vars_template):
            nvram = workdir / "OVMF_VARS.fd"
            shutil.copyfile(vars_template, nvram)
            return ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                    "-drive", f"if=pflash,format=raw,unit=1,file={nvram}"]
    raise FileNotFoundError("no OVMF firmware found (install the 'ovmf' package) for firmware='uefi'")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def boot(image: str | Path | Sequence[str | Path], fmt: str | Sequence[str] = "raw", *,
         disk_bus: str = "sata", nic_model: str = "e1000", mac: str | None = None, firmware: str = "bios",
         timeout: float = 300, memory_mb: int = 1024, vcpus: int = 1, machine: str | None = None,
         nic_slot: int | None = None, log_dir: str | Path | None = None) -> BootResult:
    """Boot ``image`` (or a list of images, first one boots) and wait for the marker.

    Returns as soon as the marker appears (booted) or a failure sign does
    (not booted, ``reason`` quotes it), else after ``timeout`` seconds. The
    images are opened only as read-only backing files; qemu is always killed.
    ``nic_slot=192`` with ``machine='q35'`` reproduces VMware's ``ens192``.
    """
    images = [Path(image)] if isinstance(image, (str, Path)) else [Path(p) for p in image]
    formats = [fmt] * len(images) if isinstance(fmt, str) else list(fmt)
    if len(formats) != len(images):
        raise ValueError("give one format per image")
    if disk_bus not in DISK_BUSES:
        raise ValueError(f"disk_bus must be one of {DISK_BUSES}, not {disk_bus!r}")
    if nic_model not in NIC_MODELS:
        raise ValueError(f"nic_model must be one of {tuple(NIC_MODELS)}, not {nic_model!r}")
    if firmware not in ("bios", "uefi"):
        raise ValueError("firmware must be 'bios' or 'uefi'")
    machine = machine or ("q35" if nic_slot is not None and nic_slot > 31 else "pc")
    qemu = require_tool("qemu-system-x86_64", "qemu-system-x86")
    logdir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="kvmigrate-boot-"))
    logdir.mkdir(parents=True, exist_ok=True)
    serial_log = logdir / "serial.log"
    firmware_log = logdir / "firmware.log"
    for path in (serial_log, firmware_log):
        path.unlink(missing_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="kvmigrate-boot-overlays-"))
    try:
        overlays = []
        for i, (img, img_fmt) in enumerate(zip(images, formats, strict=True)):
            overlay = workdir / f"overlay{i}.qcow2"
            run_tool(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(img.resolve()), "-F", img_fmt,
                      str(overlay)])
            overlays.append(overlay)
        argv = [qemu, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                *qemu_accel_args(), "-machine", machine, "-m", str(memory_mb), "-smp", str(vcpus),
                "-rtc", "base=utc", "-serial", f"file:{serial_log}",
                "-debugcon", f"file:{firmware_log}", "-global", "isa-debugcon.iobase=0x402",
                *_firmware_args(firmware, workdir), *_disk_args(overlays, disk_bus, machine),
                *_nic_args(nic_model, mac, nic_slot, machine)]
        with qemu_slot(f"booting {images[0].name}"):
            return _run(argv, serial_log, firmware_log, logdir=logdir, timeout=timeout, what=images[0].name,
                        config=f"{disk_bus}/{nic_model}/{firmware}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(argv: list[str], serial_log: Path, firmware_log: Path, *, logdir: Path, timeout: float,
         what: str, config: str) -> BootResult:
    stderr_path = logdir / "qemu.stderr"
    start = time.monotonic()
    log(f"booting {what} ({config}) under qemu; serial log {serial_log}")
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)

    def result(booted: bool, markers: list[str], reason: str) -> BootResult:
        seconds = time.monotonic() - start
        log(f"{what} ({config}): {'booted' if booted else 'did not boot'} after {seconds:.1f} s: {reason}")
        return BootResult(booted=booted, markers=markers, reason=reason, seconds=seconds, log_path=serial_log,
                          firmware_log_path=firmware_log, argv=argv)

    try:
        failure_at: float | None = None
        first_failure: tuple[str, str] | None = None
        while True:
            serial = _clean(serial_log.read_text(errors="replace")) if serial_log.exists() else ""
            fw = _clean(firmware_log.read_text(errors="replace")) if firmware_log.exists() else ""
            lines = serial.splitlines() + fw.splitlines()
            markers = [ln[ln.index(MARKER_PREFIX):].strip() for ln in serial.splitlines() if MARKER_PREFIX in ln]
            if markers:
                return result(True, markers, f"marker seen after {time.monotonic() - start:.1f} s")
            if first_failure is None:
                first_failure = _find_failure(lines)
                if first_failure:
                    failure_at = time.monotonic()
            if first_failure and failure_at is not None and (
                    time.monotonic() - failure_at >= FAILURE_SETTLE_SECONDS or proc.poll() is not None):
                what_failed, _line = first_failure
                return result(False, [], f"{what_failed}: " + " | ".join(_failure_lines(lines)[:4]))
            if proc.poll() is not None:
                err = stderr_path.read_text(errors="replace").strip()
                tail = " | ".join(serial.splitlines()[-5:])
                return result(False, [], f"qemu exited with code {proc.returncode} before the marker: "
                                         f"{err or '(no error output)'}; last serial lines: {tail}")
            if time.monotonic() - start > timeout:
                tail = " | ".join(ln.strip() for ln in serial.splitlines()[-8:] if ln.strip())
                return result(False, [], f"no marker within {timeout:.0f} s; last serial lines: {tail}")
            time.sleep(0.5)
    finally:
        _stop(proc)
