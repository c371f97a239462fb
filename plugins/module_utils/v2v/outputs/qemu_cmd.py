# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A qemu command line that boots a converted guest, without libvirt.

Pure functions. :func:`build_qemu_command` returns an argv list (never a
shell string) that serializes the same :class:`target.TargetHardware` as the
libvirt XML from :mod:`domain_xml`: virtio-blk or
virtio-scsi disks with an explicit ``format=``, virtio NICs keeping the
original MAC on user-mode networking, a serial console on stdio or in a
file, OVMF in pflash for UEFI guests. :func:`render_shell_script` turns the
argv into the ``#!/bin/sh`` script that ``output: qemu`` writes next to the
disks.

Differences from the libvirt XML, because qemu alone cannot do them: NICs
always use ``-netdev user`` (the network/bridge maps only matter to
libvirt); no vsock (it needs a CID the caller manages); the guest-agent
channel only when a socket path is given; no Hyper-V enlightenments (they
belong to ``-cpu``, which comes from the caller's accelerator arguments).
"""

from __future__ import annotations

import shlex

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import OutputError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import GuestInfo, Source, TargetDisk
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.target import (
    GRAPHICS_LISTEN,
    GUEST_AGENT_CHANNEL,
    DomainOptions,
    TargetHardware,
    decide_hardware,
    normalize_mac,
)

QEMU = "qemu-system-x86_64"
# Debian's OVMF (package ovmf), 4 MiB flash layout.
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
OVMF_CODE_SECBOOT = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
# Microsoft's keys enrolled, so shim and Windows boot with secure boot on.
OVMF_VARS_SECBOOT = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"

_NIC_DEVICES = {"virtio": "virtio-net-pci", "e1000": "e1000", "e1000e": "e1000e", "rtl8139": "rtl8139"}
_VIDEO_DEVICES = {"virtio": "virtio-vga", "vga": "VGA", "qxl": "qxl-vga", "bochs": "bochs-display",
                  "cirrus": "cirrus-vga"}


def ovmf_files(secure_boot: bool) -> tuple[str, str]:
    """(code, VARS template) of Debian's OVMF for a guest with or without secure boot.

    The caller copies the VARS template to a per-guest file (the guest writes
    its boot entries there) and passes that copy as ``options.uefi_nvram``.
    """
    return (OVMF_CODE_SECBOOT, OVMF_VARS_SECBOOT) if secure_boot else (OVMF_CODE, OVMF_VARS)


def qemu_escape(value: str) -> str:
    """Escape a value inside a qemu ``key=value,...`` option (``,`` -> ``,,``)."""
    return value.replace(",", ",,")


def _split_accel(accel_args: list[str]) -> tuple[list[str], list[str]]:
    """Pull ``-machine`` values out of the accelerator arguments, to merge them."""
    machine: list[str] = []
    rest: list[str] = []
    args = iter(accel_args)
    for arg in args:
        if arg in ("-machine", "-M"):
            value = next(args, None)
            if value is None:
                raise OutputError(f"accelerator arguments end with {arg} and no value")
            machine.append(value)
        else:
            rest.append(arg)
    return machine, rest


def build_qemu_command(source: Source, disks: list[TargetDisk], options: DomainOptions, accel_args: list[str],
                       *, guest: GuestInfo | None = None, qemu: str = QEMU,
                       qga_socket: str | None = None) -> list[str]:
    """argv that boots the converted guest under qemu.

    ``accel_args`` come from :func:`appliance.qemu_accel_args` (e.g.
    ``-machine accel=tcg -cpu max``); their ``-machine`` values are merged
    into the one ``-machine`` option. UEFI guests need ``options.uefi_nvram``:
    a per-guest copy of the VARS template (see :func:`ovmf_files`);
    ``options.uefi_loader`` overrides the code file. With
    ``options.serial_log`` the serial console goes to that file (for tests
    and unattended boots), otherwise to stdio together with the monitor
    (Ctrl-A c). ``qga_socket`` adds the guest-agent channel on that unix
    socket. Raises :class:`OutputError` for what qemu would refuse.
    """
    return qemu_argv(decide_hardware(source, disks, options, guest), accel_args, qemu=qemu, qga_socket=qga_socket)


def qemu_argv(hw: TargetHardware, accel_args: list[str], *, qemu: str = QEMU,
              qga_socket: str | None = None) -> list[str]:
    """The argv of :func:`build_qemu_command` for already decided hardware."""
    if hw.secure_boot and not hw.q35:
        raise OutputError(f"secure boot needs a q35 machine, not {hw.machine!r}", subject=hw.source.name,
                          hint="Use machine: q35")
    accel_machine, accel_rest = _split_accel(accel_args)

    machine = [hw.machine]
    if hw.secure_boot:
        machine.append("smm=on")
    argv = [qemu, "-name", f"guest={qemu_escape(hw.name)}", "-machine", ",".join(machine + accel_machine),
            *accel_rest, "-m", str(hw.memory_mb)]
    smp = str(hw.vcpus)
    if hw.topology:
        smp += ",sockets={},cores={},threads={}".format(*hw.topology)
    argv += ["-smp", smp, "-no-user-config", "-nodefaults"]
    if hw.uuid:
        argv += ["-uuid", hw.uuid]
    if hw.genid:
        argv += ["-device", f"vmgenid,guid={hw.genid}"]
    argv += ["-rtc", f"base={hw.clock},driftfix=slew"]

    if hw.firmware == "uefi":
        code, template = ovmf_files(hw.secure_boot)
        if not hw.uefi_nvram:
            raise OutputError("a UEFI guest needs its own copy of the OVMF VARS file", subject=hw.source.name,
                              hint=f"Copy {hw.uefi_nvram_template or template} next to the disks "
                                   "and pass the copy as uefi_nvram")
        if hw.secure_boot:
            argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={qemu_escape(hw.uefi_loader or code)}",
                 "-drive", f"if=pflash,format=raw,unit=1,file={qemu_escape(hw.uefi_nvram)}"]

    if hw.scsi:
        argv += ["-device", "virtio-scsi-pci,id=scsi0"]
    for index, disk in enumerate(hw.disks):
        drive = f"file={qemu_escape(disk.path)},format={disk.format},if=none,id=drive{index},discard=unmap"
        if hw.disk_cache:
            drive += f",cache={hw.disk_cache}"
        device = (f"scsi-hd,bus=scsi0.0,scsi-id={index},lun=0" if hw.scsi else "virtio-blk-pci") \
            + f",drive=drive{index},id=disk{index}"
        if index == 0:
            device += ",bootindex=1"
        argv += ["-drive", drive, "-device", device]

    cdroms = floppies = 0
    for kind in hw.removables:
        if kind == "cdrom":
            bus = f"ide.{cdroms}" if hw.q35 else f"ide.{cdroms // 2},unit={cdroms % 2}"
            argv += ["-device", f"ide-cd,bus={bus},id=cdrom{cdroms}"]
            cdroms += 1
        else:
            if floppies == 0 and hw.q35:
                argv += ["-device", "isa-fdc,id=fdc0"]
            argv += ["-device", f"floppy,unit={floppies},id=floppy{floppies}"]
            floppies += 1

    for index, nic in enumerate(hw.nics):
        device = f"{_NIC_DEVICES.get(nic.model, nic.model)},netdev=net{index},id=nic{index}"
        if nic.source.mac:
            device += f",mac={normalize_mac(nic.source.mac)}"
        argv += ["-netdev", f"user,id=net{index}", "-device", device]

    if hw.serial_log:
        argv += ["-chardev", f"file,id=serial0,path={qemu_escape(hw.serial_log)}", "-serial", "chardev:serial0"]
    else:
        argv += ["-serial", "mon:stdio"]
    if qga_socket:
        argv += ["-device", "virtio-serial-pci,id=virtio-serial0",
                 "-chardev", f"socket,id=qga0,path={qemu_escape(qga_socket)},server=on,wait=off",
                 "-device", f"virtserialport,bus=virtio-serial0.0,chardev=qga0,name={GUEST_AGENT_CHANNEL}"]

    if hw.graphics:
        model = hw.video or "virtio"
        argv += ["-device", _VIDEO_DEVICES.get(model, model), "-device", "qemu-xhci,id=usb",
                 "-device", "usb-tablet,bus=usb.0", "-vnc", f"{GRAPHICS_LISTEN}:0,to=99"]
    else:
        argv += ["-display", "none"]
    argv += ["-device", "virtio-balloon-pci,id=balloon0",
             "-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0"]
    return argv


def render_shell_script(argv: list[str], *, comment: str | None = None) -> str:
    """A ``#!/bin/sh`` script that execs ``argv`` (every word shell-quoted).

    One option per line; extra arguments given to the script are appended
    (``./guest.sh -S``). ``comment`` lines go under the shebang.
    """
    if not argv:
        raise ValueError("empty argv")
    lines = ["#!/bin/sh"]
    if comment:
        lines += [f"# {line}".rstrip() for line in comment.splitlines()]
    groups: list[list[str]] = [[argv[0]]]
    for arg in argv[1:]:
        if arg.startswith("-") or len(groups) == 1:
            groups.append([arg])
        else:
            groups[-1].append(arg)
    body = [shlex.join(group) for group in groups]
    lines.append("exec " + " \\\n    ".join([*body, '"$@"']))
    return "\n".join(lines) + "\n"
