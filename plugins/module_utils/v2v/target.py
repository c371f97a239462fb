# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The converted guest's virtual hardware, decided once.

:func:`decide_hardware` turns what the source said (:class:`Source`), what
inspection found (:class:`GuestInfo`), the converted disks and the user's
:class:`DomainOptions` into one :class:`TargetHardware` value. Every renderer
(the libvirt XML in :mod:`domain_xml`, the qemu argv in
:mod:`outputs.qemu_cmd`, the KubeVirt manifest in :mod:`outputs.kubevirt`)
only serializes that value, so the outputs cannot disagree on the machine
type, firmware, buses, NIC model, clock or CPU topology.

Policy (the choices that are not options):

- q35 machine, so removable media sit on SATA (q35 has no IDE); floppies on
  the ISA floppy controller. Removable drives are kept, empty (two floppies at most).
- Disks on virtio-blk (``vda``...) or virtio-scsi (``sda``...), the first one
  booting; NICs become virtio with the original MAC, so the guest's network
  configuration (keyed by MAC after conversion) still applies.
- Firmware: the source's own; inspection decides when the source did not say;
  BIOS when nobody knows. Secure boot needs q35 (and SMM).
- Clock: UTC, local time for Windows; Hyper-V enlightenments for Windows on KVM.
- CPU: ``host-model`` on KVM, ``maximum`` under TCG; the source's topology
  when it adds up to its vCPU count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import OutputError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import (
    GuestInfo,
    Serializable,
    Source,
    SourceNIC,
    TargetDisk,
)

DOMAIN_TYPES = ("kvm", "qemu")
BLOCK_DRIVERS = ("virtio-blk", "virtio-scsi")
DISK_FORMATS = ("raw", "qcow2")
CLOCK_OFFSETS = ("utc", "localtime")
LIFECYCLE_ACTIONS = ("destroy", "restart", "preserve", "rename-restart")
CRASH_ACTIONS = ("destroy", "restart", "preserve", "rename-restart", "coredump-destroy", "coredump-restart")
VIDEO_MODELS = ("virtio", "vga", "qxl", "bochs", "cirrus")
CPU_MODES = ("host-model", "host-passthrough", "maximum")
WILDCARD_KEYS = ("*", "default")
MAX_FLOPPIES = 2
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"
GRAPHICS_LISTEN = "127.0.0.1"

_MAC_RE = re.compile(r"^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$", re.IGNORECASE)
_NAME_BAD_RE = re.compile(r"[/\x00-\x1f]")


@dataclass
class DomainOptions(Serializable):
    """How the converted guest is described to libvirt (and to qemu).

    - ``domain_type``: ``kvm`` or ``qemu`` (TCG; what boot tests use where
      KVM does not work).
    - ``name``: domain name; default the source's name.
    - ``block_driver``: ``virtio-blk`` (``vda``...) or ``virtio-scsi``
      (``sda``... behind one virtio-scsi controller). Applies to all disks.
    - ``networks`` / ``bridges``: maps to a target libvirt network / host
      bridge. Keys are a source network or bridge name, a MAC address, or
      ``*``/``default`` as a fallback; see :func:`map_nic` for precedence.
    - ``default_network``: network for every NIC that no map entry matched.
    - ``serial_log``: file that receives everything the guest writes on its
      serial console (libvirt ``<log append='off'>``; qemu ``-serial file:``).
    - ``graphics``: ``True`` always adds VNC + video, ``False`` never,
      ``None`` follows the source (it had a display or not).
    - ``vsock``: add a virtio vsock device; only when the target host has
      vhost-vsock (libvirt fails to start the domain otherwise).
    - ``machine``: machine type, ``q35`` unless there is a reason.
    - ``uefi_loader``: explicit UEFI code file instead of autoselection; then
      ``uefi_nvram_template`` (the VARS template) and ``uefi_nvram`` (the
      per-guest VARS copy) are written as ``<nvram>`` too. ``uefi_nvram``
      alone keeps autoselection but fixes where the VARS file lives.
    - ``timestamp``: conversion time recorded in ``<metadata>``; taken from
      here (never from the clock) so output stays deterministic.
    - ``uuid``: fixed domain UUID; ``None`` lets libvirt choose at define.
      Redefining an existing domain needs its UUID here: without one,
      libvirt refuses a second define of the same name ("already exists
      with uuid ...").
    - ``cpu_mode``: ``host-model``, ``host-passthrough``, ``maximum`` or a
      named CPU model (``qemu64``, ``EPYC``...); ``None``: ``host-model`` for
      kvm, ``maximum`` (qemu's ``-cpu max``) for TCG, where host-model
      would describe a CPU TCG cannot emulate.
    - ``clock``: ``utc`` or ``localtime``; ``None``: localtime for Windows.
    - ``video``: video model when there are graphics; ``None``: ``vga`` for
      Windows (no virtio-gpu driver at first boot), else ``virtio``.
    - ``disk_cache``: libvirt cache mode (``none``, ``writeback``...);
      ``None`` keeps the hypervisor default (``none`` needs O_DIRECT, which
      some file systems, e.g. tmpfs, refuse).
    - ``nic_model``: NIC model, ``virtio`` unless there is a reason.
    - ``on_poweroff`` / ``on_reboot`` / ``on_crash``: lifecycle actions.
    """

    domain_type: str = "kvm"
    name: str | None = None
    block_driver: str = "virtio-blk"
    networks: dict[str, str] = field(default_factory=dict)
    bridges: dict[str, str] = field(default_factory=dict)
    default_network: str | None = None
    serial_log: str | None = None
    graphics: bool | None = None
    vsock: bool = False
    machine: str = "q35"
    uefi_loader: str | None = None
    uefi_nvram_template: str | None = None
    uefi_nvram: str | None = None
    timestamp: str | None = None
    uuid: str | None = None
    cpu_mode: str | None = None
    clock: str | None = None
    video: str | None = None
    disk_cache: str | None = None
    nic_model: str = "virtio"
    on_poweroff: str = "destroy"
    on_reboot: str = "restart"
    on_crash: str = "destroy"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`OutputError` for a value libvirt would refuse."""
        _choice("domain_type", self.domain_type, DOMAIN_TYPES)
        _choice("block_driver", self.block_driver, BLOCK_DRIVERS)
        if self.clock is not None:
            _choice("clock", self.clock, CLOCK_OFFSETS)
        if self.video is not None:
            _choice("video", self.video, VIDEO_MODELS)
        _choice("on_poweroff", self.on_poweroff, LIFECYCLE_ACTIONS)
        _choice("on_reboot", self.on_reboot, LIFECYCLE_ACTIONS)
        _choice("on_crash", self.on_crash, CRASH_ACTIONS)
        if self.name is not None:
            check_domain_name(self.name)
        if not self.machine:
            raise OutputError("the machine type is empty", hint="Use 'q35' (the default)")
        for label, mapping in (("networks", self.networks), ("bridges", self.bridges)):
            for key, value in mapping.items():
                if not key or not value:
                    raise OutputError(f"{label} has an empty name in the entry {key!r}: {value!r}",
                                      hint="Map a source name, MAC address or '*' to a target name")
        overlap = sorted(set(_mac_keys(self.networks)) & set(_mac_keys(self.bridges)))
        if overlap:
            raise OutputError(f"MAC address {overlap[0]} is mapped both to a network and to a bridge",
                              hint="Map each MAC address in either networks or bridges, not both")


@dataclass
class NICMapping(Serializable):
    """Where one source NIC goes: ``kind`` is ``network`` or ``bridge``.

    ``rule`` says which rule decided: ``mac``, ``name``, ``wildcard``,
    ``default_network`` or ``unmapped`` (original name kept).
    """

    kind: str
    name: str
    rule: str
    mac: str | None = None


def _choice(label: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise OutputError(f"{label} {value!r} is not supported", hint=f"Use one of: {', '.join(allowed)}")


def check_domain_name(name: str) -> str:
    """Return ``name`` if libvirt accepts it as a domain name, else raise."""
    if not name or not name.strip():
        raise OutputError("the domain name is empty", hint="Set a name for the converted guest")
    if _NAME_BAD_RE.search(name):
        raise OutputError(f"the domain name {name!r} contains '/' or a control character",
                          hint="Rename the converted guest")
    return name


def normalize_mac(mac: str) -> str:
    return mac.strip().lower().replace("-", ":")


def is_mac(key: str) -> bool:
    return bool(_MAC_RE.match(key.strip()))


def _mac_keys(mapping: dict[str, str]) -> dict[str, str]:
    return {normalize_mac(k): v for k, v in mapping.items() if is_mac(k)}


def map_nic(nic: SourceNIC, options: DomainOptions) -> NICMapping:
    """Decide the target network or bridge of one source NIC.

    Precedence, first match wins:

    1. the NIC's MAC address as a key of ``networks`` (-> network) or
       ``bridges`` (-> bridge); any spelling (``-``/``:``, any case);
    2. the source name as a key of the map of its own kind (a source
       network in ``networks``, a source bridge in ``bridges``);
    3. the source name as a key of the other map (so ``bridges: {"VM
       Network": br0}`` moves a source network onto a bridge);
    4. a ``*`` key, then a ``default`` key, of the map of its own kind;
    5. ``default_network``;
    6. nothing matched: the source kind and name are kept (a NIC without
       any name goes to the network ``default``).
    """
    mac = normalize_mac(nic.mac) if nic.mac else None
    if mac:
        by_mac_net = _mac_keys(options.networks)
        by_mac_br = _mac_keys(options.bridges)
        if mac in by_mac_net:
            return NICMapping("network", by_mac_net[mac], "mac", mac)
        if mac in by_mac_br:
            return NICMapping("bridge", by_mac_br[mac], "mac", mac)
    kind, name = ("bridge", nic.bridge) if nic.bridge else ("network", nic.network)
    own, other = (options.bridges, options.networks) if kind == "bridge" else (options.networks, options.bridges)
    other_kind = "network" if kind == "bridge" else "bridge"
    if name:
        if name in own:
            return NICMapping(kind, own[name], "name", mac)
        if name in other:
            return NICMapping(other_kind, other[name], "name", mac)
    for key in WILDCARD_KEYS:
        if key in own:
            return NICMapping(kind, own[key], "wildcard", mac)
    if options.default_network:
        return NICMapping("network", options.default_network, "default_network", mac)
    if name:
        return NICMapping(kind, name, "unmapped", mac)
    return NICMapping("network", "default", "unmapped", mac)


def drive_name(prefix: str, index: int) -> str:
    """``vd`` + 0 -> ``vda``, 25 -> ``vdz``, 26 -> ``vdaa`` (Linux's scheme)."""
    if index < 0:
        raise ValueError(index)
    letters = ""
    index += 1
    while index > 0:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return prefix + letters


def domain_name(source: Source, options: DomainOptions) -> str:
    return check_domain_name(options.name if options.name is not None else source.name)


def firmware_of(source: Source, guest: GuestInfo | None = None) -> tuple[str, bool]:
    """Return (``bios``|``uefi``, secure_boot) for the converted guest.

    The source's own firmware wins; inspection decides when the source did
    not say (``unknown``); BIOS when nobody knows.
    """
    fw = (source.firmware.type or "").lower()
    if fw not in ("bios", "uefi") and guest is not None and guest.firmware in ("bios", "uefi"):
        fw = guest.firmware
    if fw != "uefi":
        return "bios", False
    return "uefi", bool(source.firmware.secure_boot)


def is_windows(guest: GuestInfo | None) -> bool:
    return guest is not None and (guest.os_type or "").lower() == "windows"


def clock_offset(options: DomainOptions, guest: GuestInfo | None) -> str:
    if options.clock:
        return options.clock
    return "localtime" if is_windows(guest) else "utc"


def cpu_topology(source: Source) -> tuple[int, int, int] | None:
    """(sockets, cores, threads) when the source says and it adds up to the vCPU count."""
    cpu = source.cpu
    if not (cpu.sockets or cpu.cores or cpu.threads):
        return None
    sockets, cores, threads = cpu.sockets or 1, cpu.cores or 1, cpu.threads or 1
    if min(sockets, cores, threads) < 1 or sockets * cores * threads != source.vcpus:
        return None
    return sockets, cores, threads


def cpu_mode(options: DomainOptions) -> str:
    if options.cpu_mode:
        return options.cpu_mode
    return "host-model" if options.domain_type == "kvm" else "maximum"


def wants_graphics(source: Source, options: DomainOptions) -> bool:
    if options.graphics is not None:
        return options.graphics
    return bool(source.display)


def video_model(options: DomainOptions, guest: GuestInfo | None) -> str:
    if options.video:
        return options.video
    return "vga" if is_windows(guest) else "virtio"


def is_q35(machine: str) -> bool:
    return "q35" in machine


def check_disks(source: Source, disks: list[TargetDisk]) -> None:
    if not disks:
        raise OutputError("there are no target disks to describe", subject=source.name,
                          hint="Convert at least one disk before building the domain")
    for disk in disks:
        if disk.format not in DISK_FORMATS:
            raise OutputError(f"target disk {disk.path} has format {disk.format!r}", subject=source.name,
                              hint=f"Convert disks to one of: {', '.join(DISK_FORMATS)}")


def _check_firmware(source: Source, options: DomainOptions, firmware: str, secure_boot: bool) -> None:
    if secure_boot and not is_q35(options.machine):
        raise OutputError(f"secure boot needs a q35 machine, not {options.machine!r}", subject=source.name,
                          hint="Use machine: q35")
    if firmware != "uefi" and (options.uefi_loader or options.uefi_nvram):
        raise OutputError("UEFI loader or NVRAM paths were given for a BIOS guest", subject=source.name,
                          hint="Drop uefi_loader/uefi_nvram, or check the source's firmware")
    if options.uefi_nvram_template and not options.uefi_loader:
        raise OutputError("uefi_nvram_template needs uefi_loader", subject=source.name,
                          hint="Give both, or neither to let libvirt choose the firmware")


Topology = tuple[int, int, int]


@dataclass
class TargetNIC(Serializable):
    """One NIC of the converted guest: where it goes (``mapping``) and its device model."""

    mapping: NICMapping
    model: str
    source: SourceNIC = field(default_factory=SourceNIC)


@dataclass
class TargetHardware(Serializable):
    """Everything a renderer needs to describe the converted guest; see the module docstring."""

    name: str
    source: Source
    guest: GuestInfo | None
    domain_type: str
    machine: str
    firmware: str
    secure_boot: bool
    memory_mb: int
    vcpus: int
    topology: Topology | None
    cpu_mode: str
    clock: str
    windows: bool
    hyperv: bool
    block_driver: str
    disks: list[TargetDisk]
    # Kinds of the kept removable drives in order: "cdrom" or "floppy".
    removables: list[str]
    nics: list[TargetNIC]
    graphics: bool
    video: str | None
    genid: str | None = None
    uuid: str | None = None
    serial_log: str | None = None
    vsock: bool = False
    uefi_loader: str | None = None
    uefi_nvram_template: str | None = None
    uefi_nvram: str | None = None
    disk_cache: str | None = None
    on_poweroff: str = "destroy"
    on_reboot: str = "restart"
    on_crash: str = "destroy"
    timestamp: str | None = None

    @property
    def scsi(self) -> bool:
        return self.block_driver == "virtio-scsi"

    @property
    def q35(self) -> bool:
        return is_q35(self.machine)

    def disk_dev(self, index: int) -> str:
        """The guest's name for disk ``index``: ``vda``... or ``sda``... (virtio-scsi)."""
        return drive_name("sd" if self.scsi else "vd", index)


def decide_hardware(source: Source, disks: list[TargetDisk], options: DomainOptions,
                    guest: GuestInfo | None = None) -> TargetHardware:
    """Decide the converted guest's hardware; raise :class:`OutputError` for what no hypervisor would run."""
    options.validate()
    name = domain_name(source, options)
    check_disks(source, disks)
    if source.memory_mb < 1 or source.vcpus < 1:
        raise OutputError(f"memory {source.memory_mb} MiB / {source.vcpus} vCPUs is not a usable size",
                          subject=source.name, hint="Check the source's memory and CPU settings")
    firmware, secure_boot = firmware_of(source, guest)
    _check_firmware(source, options, firmware, secure_boot)
    removables: list[str] = []
    for removable in source.removables:
        kind = removable.kind.lower()
        if kind == "cdrom" or (kind == "floppy" and removables.count("floppy") < MAX_FLOPPIES):
            removables.append(kind)
    graphics = wants_graphics(source, options)
    windows = is_windows(guest)
    return TargetHardware(
        name=name, source=source, guest=guest, domain_type=options.domain_type, machine=options.machine,
        firmware=firmware, secure_boot=secure_boot, memory_mb=source.memory_mb, vcpus=source.vcpus,
        topology=cpu_topology(source), cpu_mode=cpu_mode(options), clock=clock_offset(options, guest),
        windows=windows, hyperv=windows and options.domain_type == "kvm", block_driver=options.block_driver,
        disks=list(disks), removables=removables,
        nics=[TargetNIC(mapping=map_nic(nic, options), model=options.nic_model, source=nic) for nic in source.nics],
        graphics=graphics, video=video_model(options, guest) if graphics else None, genid=source.genid,
        uuid=options.uuid, serial_log=options.serial_log, vsock=options.vsock, uefi_loader=options.uefi_loader,
        uefi_nvram_template=options.uefi_nvram_template, uefi_nvram=options.uefi_nvram,
        disk_cache=options.disk_cache, on_poweroff=options.on_poweroff, on_reboot=options.on_reboot,
        on_crash=options.on_crash, timestamp=options.timestamp)
