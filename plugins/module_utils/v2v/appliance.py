# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The libguestfs appliance and the KVM/TCG decision.

Some hosts have a ``/dev/kvm`` that opens fine but cannot run a real guest
(nested "PVM" hypervisors: the guest hangs forever after the BIOS). So KVM is
never trusted on sight: a tiny qemu boots the host's own kernel with no root
disk, under KVM, with a short timeout. If that kernel does not print its
banner in time, KVM is declared unusable and TCG is used, with a warning.
The answer is cached per host boot, so the probe runs once.

``KVMIGRATE_ACCEL=kvm|tcg`` forces the answer without probing.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import ApplianceError, V2VError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Serializable

ACCEL_ENV = "KVMIGRATE_ACCEL"
PROBE_TIMEOUT = 15.0
# The kernel prints this once it is really running: reached by KVM in well
# under a second, so the timeout only matters on a broken KVM.
_PROBE_SUCCESS = ("Kernel panic", "VFS: Unable to mount root", "Linux version")


@dataclass
class AccelDecision(Serializable):
    """Which accelerator guests and appliances use on this host, and why."""

    accel: str
    reason: str
    probed: bool
    warning: str | None = None


_decision: AccelDecision | None = None


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kvmigrate"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return "unknown"


def _host_kernel() -> str | None:
    candidates = sorted(glob.glob("/boot/vmlinuz-*"), key=os.path.getmtime, reverse=True)
    for path in candidates:
        if os.access(path, os.R_OK):
            return path
    return None


def probe_kvm(timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """Boot the host kernel under KVM for a moment; return (works, reason)."""
    if not os.path.exists("/dev/kvm"):
        return False, "/dev/kvm does not exist"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is not accessible to this user"
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        return False, "qemu-system-x86_64 is not installed"
    kernel = _host_kernel()
    if kernel is None:
        return False, "no readable kernel in /boot to probe KVM with"
    with tempfile.TemporaryDirectory(prefix="kvmigrate-kvmprobe-") as tmp:
        log = os.path.join(tmp, "serial.log")
        argv = [qemu, "-machine", "accel=kvm", "-cpu", "host", "-m", "256", "-nodefaults",
                "-display", "none", "-no-reboot", "-kernel", kernel,
                "-append", "console=ttyS0 panic=-1 root=/dev/kvmigrate-probe",
                "-serial", f"file:{log}"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                text = Path(log).read_text(errors="replace") if os.path.exists(log) else ""
                if any(marker in text for marker in _PROBE_SUCCESS):
                    return True, f"a test kernel booted under KVM ({kernel})"
                if proc.poll() is not None:
                    err = (proc.stderr.read() if proc.stderr else "").strip()
                    return False, f"qemu with accel=kvm exited with code {proc.returncode}: {err}"
                time.sleep(0.2)
            return False, (f"a test kernel started under KVM printed nothing within {timeout:.0f} s "
                           "(KVM is present but does not run guests; nested hypervisor?)")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stderr:
                proc.stderr.close()


def decide_accelerator(refresh: bool = False) -> AccelDecision:
    """Return the accelerator to use; probe at most once per host boot."""
    global _decision  # noqa: PLW0603  # pylint: disable=global-statement
    forced = os.environ.get(ACCEL_ENV, "").strip().lower()
    if forced:
        if forced not in ("kvm", "tcg"):
            raise V2VError(f"{ACCEL_ENV}={forced!r} is not valid", hint="Use 'kvm' or 'tcg', or unset it")
        return AccelDecision(accel=forced, reason=f"forced by {ACCEL_ENV}", probed=False)
    if _decision is not None and not refresh:
        return _decision
    cache_file = cache_dir() / "accel.json"
    boot_id = _boot_id()
    if not refresh:
        try:
            cached = json.loads(cache_file.read_text(encoding="utf-8"))
            if cached.get("boot_id") == boot_id and cached.get("accel") in ("kvm", "tcg"):
                _decision = AccelDecision(accel=cached["accel"], reason=cached["reason"],
                                          probed=False, warning=cached.get("warning"))
                return _decision
        except (OSError, ValueError):
            pass
    works, reason = probe_kvm()
    if works:
        decision = AccelDecision(accel="kvm", reason=reason, probed=True)
    else:
        decision = AccelDecision(
            accel="tcg", reason=reason, probed=True,
            warning=(f"KVM is not usable here ({reason}); using TCG software emulation, which is "
                     f"much slower. Set {ACCEL_ENV}=kvm to force KVM."))
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"boot_id": boot_id, **decision.to_dict()}), encoding="utf-8")
        tmp.replace(cache_file)
    except OSError:
        pass
    _decision = decision
    return decision


def qemu_accel_args(decision: AccelDecision | None = None) -> list[str]:
    """qemu arguments selecting the accelerator (and a CPU model that works with it)."""
    decision = decision or decide_accelerator()
    if decision.accel == "kvm":
        return ["-machine", "accel=kvm", "-cpu", "host"]
    return ["-machine", "accel=tcg", "-cpu", "max"]


def libguestfs_env(decision: AccelDecision | None = None) -> dict[str, str]:
    """Environment for libguestfs command-line tools run by the engine."""
    decision = decision or decide_accelerator()
    env = dict(os.environ)
    env["LIBGUESTFS_BACKEND"] = "direct"
    if decision.accel == "tcg":
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    else:
        env.pop("LIBGUESTFS_BACKEND_SETTINGS", None)
    return env


@dataclass
class DriveSpec:
    """A drive to add to the appliance: always with an explicit format."""

    path: str
    format: str
    readonly: bool = True
    name: str | None = None
    # Let fstrim inside the appliance punch holes into a writable overlay.
    discard: bool = False


class Appliance:
    """One libguestfs handle, launched once, used for inspection and conversion.

    Use as a context manager; the handle is shut down and closed on exit, so
    no qemu process outlives the work.
    """

    def __init__(self, drives: list[DriveSpec], *, memsize_mb: int | None = None,
                 network: bool = False, decision: AccelDecision | None = None) -> None:
        if not drives:
            raise ApplianceError("no disks to open")
        self.drives = drives
        self.memsize_mb = memsize_mb
        self.network = network
        self.decision = decision or decide_accelerator()
        self.g: Any = None
        self.launch_seconds: float | None = None

    def __enter__(self) -> Any:
        try:
            import guestfs  # pylint: disable=import-outside-toplevel
        except ImportError as exc:
            raise ApplianceError("the libguestfs Python bindings are not importable",
                                 hint="Install python3-guestfs (Debian) or python3-libguestfs (RHEL)") from exc
        g = guestfs.GuestFS(python_return_dict=True)
        try:
            g.set_backend("direct")
            if self.decision.accel == "tcg":
                g.set_backend_settings(["force_tcg"])
            if self.memsize_mb:
                g.set_memsize(self.memsize_mb)
            g.set_network(self.network)
            for drive in self.drives:
                opts: dict[str, Any] = {"format": drive.format, "readonly": drive.readonly}
                if drive.name:
                    opts["name"] = drive.name
                if drive.discard and not drive.readonly:
                    opts["discard"] = "besteffort"
                g.add_drive_opts(drive.path, **opts)
            start = time.monotonic()
            g.launch()
            self.launch_seconds = time.monotonic() - start
        except RuntimeError as exc:
            g.close()
            raise ApplianceError(f"the libguestfs appliance could not start: {exc}",
                                 hint="Run 'libguestfs-test-tool' on the conversion host to see why") from exc
        self.g = g
        return g

    def __exit__(self, *exc_info: object) -> None:
        if self.g is not None:
            with contextlib.suppress(RuntimeError):
                self.g.shutdown()
            self.g.close()
            self.g = None
