# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a conversion host has and lacks: tools, bindings, a kernel, space, an accelerator, an appliance.

Every requirement is checked (none stops the others), so one run lists
everything that is missing. The accelerator is the engine's own decision
(``appliance.decide_accelerator``), not a second probe.
"""

from __future__ import annotations

import glob
import importlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.appliance import (
    AccelDecision,
    Appliance,
    DriveSpec,
    decide_accelerator,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import V2VError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Serializable

GiB = 1024 ** 3

# (command, Debian package, RHEL-family package)
TOOLS: tuple[tuple[str, str, str], ...] = (
    ("qemu-img", "qemu-utils", "qemu-img"),
    ("qemu-system-x86_64", "qemu-system-x86", "qemu-kvm"),
    ("nbdkit", "nbdkit", "nbdkit"),
    ("nbdcopy", "libnbd-bin", "libnbd"),
    ("nbdinfo", "libnbd-bin", "libnbd"),
    ("virsh", "libvirt-clients", "libvirt-client"),
)
# (Python module, Debian package, RHEL-family package)
BINDINGS: tuple[tuple[str, str, str], ...] = (
    ("guestfs", "python3-guestfs", "python3-libguestfs"),
    ("libvirt", "python3-libvirt", "python3-libvirt"),
    ("nbd", "python3-libnbd", "python3-libnbd"),
    ("hivex", "python3-hivex", "python3-hivex"),
    ("lxml", "python3-lxml", "python3-lxml"),
)


@dataclass
class HostCheck(Serializable):
    """One requirement: what, whether it is met, and what to do when it is not."""

    name: str
    ok: bool
    detail: str
    hint: str | None = None


@dataclass
class ApplianceWarmup(Serializable):
    warmed: bool
    seconds: float | None = None
    detail: str = ""


@dataclass
class HostFacts(Serializable):
    accelerator: AccelDecision
    kernels: list[str]
    work_dir: str
    free_bytes: int | None
    appliance: ApplianceWarmup
    checks: list[HostCheck] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        return [f"{c.name}: {c.detail}" + (f" ({c.hint})" if c.hint else "") for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, object]:
        data = super().to_dict()
        data["missing"] = self.missing
        return data


def _install_hint(debian: str, rhel: str) -> str:
    """What to install, naming each family's package only where the names differ."""
    if debian == rhel:
        return f"install {debian} (the same package name on Debian/Ubuntu and the RHEL family)"
    return f"install {debian} (Debian/Ubuntu) or {rhel} (RHEL family)"


def _tool_checks() -> list[HostCheck]:
    checks = []
    for command, debian, rhel in TOOLS:
        path = shutil.which(command)
        checks.append(HostCheck(name=f"tool {command}", ok=path is not None, detail=path or "not found in PATH",
                                hint=None if path else _install_hint(debian, rhel)))
    return checks


def _binding_checks() -> list[HostCheck]:
    checks = []
    for module, debian, rhel in BINDINGS:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            checks.append(HostCheck(name=f"python {module}", ok=False, detail=f"not importable: {exc}",
                                    hint=_install_hint(debian, rhel) + " for the Python that runs the modules"))
        else:
            checks.append(HostCheck(name=f"python {module}", ok=True, detail="importable"))
    return checks


def readable_kernels(boot: str = "/boot") -> tuple[list[str], list[str]]:
    """Kernels in ``boot`` that this user can read, and those it cannot."""
    found = sorted(glob.glob(os.path.join(boot, "vmlinuz-*")))
    readable = [k for k in found if os.access(k, os.R_OK)]
    return readable, [k for k in found if k not in readable]


def _kernel_check(readable: list[str], unreadable: list[str]) -> HostCheck:
    # libguestfs (supermin) builds its appliance from the host's kernel.
    if readable:
        return HostCheck(name="kernel in /boot", ok=True, detail=", ".join(readable))
    if unreadable:
        return HostCheck(name="kernel in /boot", ok=False, detail="not readable: " + ", ".join(unreadable),
                         hint="make the kernel readable (chmod 0644 /boot/vmlinuz-*) or run as root")
    return HostCheck(name="kernel in /boot", ok=False, detail="no /boot/vmlinuz-* found",
                     hint="install linux-image-amd64 (Debian) or kernel-core (RHEL family)")


def _space_check(work_dir: str, min_free_bytes: int) -> tuple[HostCheck, int | None]:
    probe = work_dir
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe.rstrip("/")) or "/"
    try:
        usage = shutil.disk_usage(probe or "/")
    except OSError as exc:
        return HostCheck(name="work_dir space", ok=False, detail=f"cannot check {work_dir}: {exc.strerror}"), None
    writable = os.access(probe or "/", os.W_OK)
    if not writable:
        return HostCheck(name="work_dir space", ok=False, detail=f"{probe} is not writable",
                         hint="choose a writable work_dir"), usage.free
    ok = usage.free >= min_free_bytes
    detail = f"{usage.free / GiB:.1f} GiB free in {work_dir} (at least {min_free_bytes / GiB:.1f} GiB wanted)"
    return HostCheck(name="work_dir space", ok=ok, detail=detail,
                     hint=None if ok else "free space there or set another work_dir"), usage.free


def warm_appliance(work_dir: str, decision: AccelDecision) -> ApplianceWarmup:
    """Launch the libguestfs appliance once on a scratch disk, so its cache is built before guests need it."""
    os.makedirs(work_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kvmigrate-warmup-", dir=work_dir) as tmp:
        scratch = os.path.join(tmp, "scratch.img")
        with open(scratch, "wb") as handle:
            handle.truncate(1024 * 1024)
        appliance = Appliance([DriveSpec(path=scratch, format="raw", readonly=True)], decision=decision)
        with appliance:
            pass
        seconds = round(appliance.launch_seconds or 0.0, 3)
    return ApplianceWarmup(warmed=True, seconds=seconds,
                           detail=f"the libguestfs appliance started in {seconds} s under {decision.accel}")


def gather_host_facts(work_dir: str, *, min_free_bytes: int, warm: bool, refresh_accelerator: bool = False
                      ) -> HostFacts:
    """Check everything a conversion needs on this host; nothing here raises for a missing piece."""
    checks = _tool_checks() + _binding_checks()
    readable, unreadable = readable_kernels()
    checks.append(_kernel_check(readable, unreadable))
    space, free = _space_check(work_dir, min_free_bytes)
    checks.append(space)
    decision = decide_accelerator(refresh=refresh_accelerator)
    checks.append(HostCheck(name="accelerator", ok=True, detail=f"{decision.accel}: {decision.reason}"))
    warmup = ApplianceWarmup(warmed=False, detail="not requested")
    if warm:
        blocking = [c.name for c in checks if not c.ok and c.name in ("python guestfs", "kernel in /boot")]
        if blocking:
            warmup = ApplianceWarmup(warmed=False, detail="skipped: " + ", ".join(blocking) + " missing")
        else:
            try:
                warmup = warm_appliance(work_dir, decision)
            except (V2VError, OSError) as exc:
                warmup = ApplianceWarmup(warmed=False, detail=str(exc))
                checks.append(HostCheck(name="libguestfs appliance", ok=False, detail=str(exc),
                                        hint="run libguestfs-test-tool on the conversion host to see why"))
            else:
                checks.append(HostCheck(name="libguestfs appliance", ok=True, detail=warmup.detail))
    return HostFacts(accelerator=decision, kernels=readable, work_dir=work_dir, free_bytes=free,
                     appliance=warmup, checks=checks)
