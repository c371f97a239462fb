"""Convertible phony guests: a phony guest plus what conversion runs inside it.

A phony guest has no kernel and no programs. Conversion runs the guest's own
tools inside the appliance (``rpm -e``, ``dracut``, ``grub2-mkconfig``), so
this adds, to a copy of a phony RHEL-like or SUSE-like guest:

- a shell (the host's ``dash`` and the libraries it needs), so scripts run;
- stand-ins for ``rpm``, ``dracut`` and ``grub2-mkconfig`` that record their
  arguments in ``/var/log/kvmigrate-phony-tools.log`` (``dracut`` also
  writes the image it was asked for);
- a kernel: ``/boot/vmlinuz-<version>`` and ``/lib/modules/<version>`` with
  virtio driver files;
- an fstab that names the root partition (``/dev/sdaN``) instead of its UUID, as older installs do.

A test converts it and reopens the output to read the log and the files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from . import phony
from .cache import Recipe, ensure_built
from .phony import PhonyGuest

KERNELS = {"phony-rocky9": ("5.14.0-362.8.1.el9_3.x86_64", "/boot/initramfs-{v}.img"),
           "phony-sles15": ("5.14.21-150500.55.19-default", "/boot/initrd-{v}")}
TOOL_LOG = "/var/log/kvmigrate-phony-tools.log"
_LOGGER = f'#!/bin/sh\necho "{{tool}} $*" >> {TOOL_LOG}\n'
_DRACUT = _LOGGER.format(tool="dracut") + 'for a in "$@"; do case "$a" in /boot/*) : > "$a";; esac; done\n'
_VIRTIO_FILES = ("kernel/drivers/block/virtio_blk.ko.xz", "kernel/drivers/scsi/virtio_scsi.ko.xz",
                 "kernel/drivers/net/virtio_net.ko.xz", "kernel/drivers/virtio/virtio_pci.ko.xz")


def _shared_libraries(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            libs.append(path)
    return libs


def _derive(tmp: Path, base: PhonyGuest, kernel: str, initrd_pattern: str) -> dict[str, Any]:
    import guestfs  # Debian's bindings, present where tests run

    disks = []
    for disk in base.disks:
        target = tmp / disk.name
        subprocess.run(["cp", "--sparse=always", str(disk), str(target)], check=True)
        os.chmod(target, 0o644)
        disks.append(target)
    g = guestfs.GuestFS(python_return_dict=True)
    try:
        g.set_backend("direct")
        g.set_backend_settings(["force_tcg"])
        for disk in disks:
            g.add_drive_opts(str(disk), format=base.format, readonly=False)
        g.launch()
        root = g.inspect_os()[0]
        for mountpoint, device in sorted(g.inspect_get_mountpoints(root).items(), key=lambda kv: len(kv[0])):
            g.mount(device, mountpoint)
        dash = shutil.which("dash") or "/bin/dash"
        g.upload(dash, "/usr/bin/sh")
        g.chmod(0o755, "/usr/bin/sh")
        for lib in _shared_libraries(dash):
            for where in ("/usr/lib64", "/usr/lib/x86_64-linux-gnu"):
                g.mkdir_p(where)
                g.upload(os.path.realpath(lib), f"{where}/{os.path.basename(lib)}")
                g.chmod(0o755, f"{where}/{os.path.basename(lib)}")  # the loader must be executable
        for tool, text in (("/usr/bin/rpm", _LOGGER.format(tool="rpm")), ("/usr/bin/dracut", _DRACUT),
                           ("/usr/sbin/grub2-mkconfig", _LOGGER.format(tool="grub2-mkconfig"))):
            g.write(tool, text.encode())
            g.chmod(0o755, tool)
        g.write(f"/boot/vmlinuz-{kernel}", b"phony kernel\n")
        g.write(initrd_pattern.format(v=kernel), b"phony initramfs\n")
        for rel in _VIRTIO_FILES:
            path = f"/lib/modules/{kernel}/{rel}"
            g.mkdir_p(os.path.dirname(path))
            g.write(path, b"")
        root_device = g.inspect_get_mountpoints(root)["/"]
        fstab = g.cat("/etc/fstab").splitlines()
        fstab = [f"{root_device} / {line.split()[2]} defaults 1 1" if len(line.split()) > 2 and line.split()[1] == "/"
                 else line for line in fstab]
        g.write("/etc/fstab", ("\n".join(fstab) + "\n").encode())
        g.umount_all()
        g.shutdown()
    finally:
        g.close()
    facts = {"disks": [d.name for d in disks], "format": base.format,
             "expected": None if base.expected is None else base.expected.__dict__,
             "details": {**base.details, "kernel": kernel, "tool_log": TOOL_LOG, "root_device": root_device}}
    return facts


def build(name: str) -> PhonyGuest:
    """``name`` is ``phony-rocky9`` or ``phony-sles15``: the convertible copy of that guest."""
    base = phony.build(name)
    kernel, initrd = KERNELS[name]
    recipe = Recipe(name=f"{name}-convertible", params={"kernel": kernel}, inputs=(base.directory.name,),
                    modules=("convertible.py",))
    directory, manifest = ensure_built(recipe, lambda tmp: _derive(tmp, base, kernel, initrd))
    return phony._load(directory, manifest)
