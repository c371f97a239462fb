# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt domain XML for a converted guest.

Pure functions that serialize one :class:`target.TargetHardware` (decided
by :func:`target.decide_hardware` from the source, the converted disks,
inspection facts and :class:`DomainOptions`); no hardware policy lives
here. The same input always gives byte-identical XML, so it can be
compared for idempotency.

The layout follows libvirt's own canonical element order (what ``virsh
dumpxml`` prints), which keeps diffs against a defined domain small.

Only libvirt-specific choices are made here: ``discard='unmap'`` on disks so
trims reach the image, the qemu-guest-agent channel, VNC on 127.0.0.1 only,
UEFI through libvirt's firmware autoselection (``<os firmware='efi'>`` with
the secure-boot feature pinned on or off) unless a loader path is given.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import GuestInfo, Source, TargetDisk
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.target import (
    CPU_MODES,
    GRAPHICS_LISTEN,
    GUEST_AGENT_CHANNEL,
    DomainOptions,
    TargetHardware,
    decide_hardware,
    drive_name,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.xmlsupport import etree, require_lxml

# lxml's element type (its class is private to lxml).
Element = Any

METADATA_NS = "https://github.com/kvmigrate/kvmigrate.v2v/xmlns/domain/1"
METADATA_PREFIX = "kvmigrate"


def _sub(parent: Element, tag: str, text: str | None = None, **attrib: str) -> Element:
    child = etree.SubElement(parent, tag, attrib)
    if text is not None:
        child.text = text
    return child


def _metadata(dom: Element, hw: TargetHardware) -> None:
    source, guest = hw.source, hw.guest
    metadata = _sub(dom, "metadata")
    ns = f"{{{METADATA_NS}}}"
    conv = etree.SubElement(metadata, ns + "conversion", nsmap={METADATA_PREFIX: METADATA_NS})
    src = etree.SubElement(conv, ns + "source")
    src.set("name", source.name)
    src.set("hypervisor", source.hypervisor)
    src.set("input", source.input)
    if guest is not None:
        g = etree.SubElement(conv, ns + "guest")
        for attr, value in (("os", guest.os_type), ("distro", guest.distro), ("version", guest.version),
                            ("product", guest.product_name), ("arch", guest.arch)):
            if value:
                g.set(attr, str(value))
    if hw.timestamp:
        etree.SubElement(conv, ns + "converted").text = hw.timestamp


def _os(dom: Element, hw: TargetHardware) -> None:
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine=hw.machine)
    if hw.firmware != "uefi":
        return
    if hw.uefi_loader:
        # Explicit paths: the pre-autoselection form every libvirt understands.
        _sub(os_el, "loader", hw.uefi_loader, readonly="yes", secure="yes" if hw.secure_boot else "no",
             type="pflash")
        if hw.uefi_nvram_template or hw.uefi_nvram:
            nvram = _sub(os_el, "nvram", hw.uefi_nvram)
            if hw.uefi_nvram_template:
                nvram.set("template", hw.uefi_nvram_template)
        return
    os_el.set("firmware", "efi")
    fw = _sub(os_el, "firmware")
    if hw.secure_boot:
        # A secure-boot source booted shim signed by Microsoft's key: pick the
        # variant with those keys enrolled.
        _sub(fw, "feature", enabled="yes", name="enrolled-keys")
        _sub(fw, "feature", enabled="yes", name="secure-boot")
    else:
        _sub(fw, "feature", enabled="no", name="secure-boot")
    if hw.uefi_nvram:
        _sub(os_el, "nvram", hw.uefi_nvram)


def _features(dom: Element, hw: TargetHardware) -> None:
    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if hw.hyperv:
        hyperv = _sub(features, "hyperv", mode="custom")
        _sub(hyperv, "relaxed", state="on")
        _sub(hyperv, "vapic", state="on")
        _sub(hyperv, "spinlocks", state="on", retries="8191")
    if hw.secure_boot:
        _sub(features, "smm", state="on")


def _cpu(dom: Element, hw: TargetHardware) -> None:
    mode = hw.cpu_mode
    if mode in CPU_MODES:
        cpu = _sub(dom, "cpu", mode=mode)
        if mode == "maximum":
            cpu.set("check", "none")
    else:
        cpu = _sub(dom, "cpu", mode="custom", match="exact", check="none")
        _sub(cpu, "model", mode, fallback="allow")
    if hw.topology:
        sockets, cores, threads = hw.topology
        _sub(cpu, "topology", sockets=str(sockets), dies="1", cores=str(cores), threads=str(threads))


def _clock(dom: Element, hw: TargetHardware) -> None:
    clock = _sub(dom, "clock", offset=hw.clock)
    _sub(clock, "timer", name="rtc", tickpolicy="catchup")
    _sub(clock, "timer", name="pit", tickpolicy="delay")
    _sub(clock, "timer", name="hpet", present="no")
    if hw.hyperv:
        _sub(clock, "timer", name="hypervclock", present="yes")


def _disks(devices: Element, hw: TargetHardware) -> int:
    """Write the disks; return how many ``sdX`` names they used."""
    for index, disk in enumerate(hw.disks):
        el = _sub(devices, "disk", type="file", device="disk")
        driver = _sub(el, "driver", name="qemu", type=disk.format)
        if hw.disk_cache:
            driver.set("cache", hw.disk_cache)
        driver.set("discard", "unmap")
        _sub(el, "source", file=disk.path)
        _sub(el, "target", dev=hw.disk_dev(index), bus="scsi" if hw.scsi else "virtio")
        if index == 0:
            _sub(el, "boot", order="1")
    return len(hw.disks) if hw.scsi else 0


def _removables(devices: Element, hw: TargetHardware, sd_used: int) -> None:
    cd_bus, cd_prefix, cd_index = ("sata", "sd", sd_used) if hw.q35 else ("ide", "hd", 0)
    floppies = 0
    for kind in hw.removables:
        if kind == "cdrom":
            el = _sub(devices, "disk", type="file", device="cdrom")
            _sub(el, "driver", name="qemu", type="raw")
            _sub(el, "target", dev=drive_name(cd_prefix, cd_index), bus=cd_bus)
            _sub(el, "readonly")
            cd_index += 1
        else:
            el = _sub(devices, "disk", type="file", device="floppy")
            _sub(el, "driver", name="qemu", type="raw")
            _sub(el, "target", dev=drive_name("fd", floppies), bus="fdc")
            floppies += 1


def _interfaces(devices: Element, hw: TargetHardware) -> None:
    for nic in hw.nics:
        mapping = nic.mapping
        el = _sub(devices, "interface", type=mapping.kind)
        if mapping.mac:
            _sub(el, "mac", address=mapping.mac)
        if mapping.kind == "bridge":
            _sub(el, "source", bridge=mapping.name)
        else:
            _sub(el, "source", network=mapping.name)
        _sub(el, "model", type=nic.model)


def _consoles(devices: Element, hw: TargetHardware) -> None:
    serial = _sub(devices, "serial", type="pty")
    if hw.serial_log:
        _sub(serial, "log", file=hw.serial_log, append="off")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    channel = _sub(devices, "channel", type="unix")
    _sub(channel, "target", type="virtio", name=GUEST_AGENT_CHANNEL)


def _graphics(devices: Element, hw: TargetHardware) -> None:
    _sub(devices, "input", type="tablet", bus="usb")
    graphics = _sub(devices, "graphics", type="vnc", port="-1", autoport="yes", listen=GRAPHICS_LISTEN)
    _sub(graphics, "listen", type="address", address=GRAPHICS_LISTEN)
    video = _sub(devices, "video")
    _sub(video, "model", type=hw.video or "virtio")


def render_domain(hw: TargetHardware) -> Element:
    """The ``<domain>`` element that describes ``hw``."""
    require_lxml()
    dom = etree.Element("domain", type=hw.domain_type)
    _sub(dom, "name", hw.name)
    if hw.uuid:
        _sub(dom, "uuid", hw.uuid)
    if hw.genid:
        _sub(dom, "genid", hw.genid)
    _metadata(dom, hw)
    kib = str(hw.memory_mb * 1024)
    _sub(dom, "memory", kib, unit="KiB")
    _sub(dom, "currentMemory", kib, unit="KiB")
    _sub(dom, "vcpu", str(hw.vcpus), placement="static")
    _os(dom, hw)
    _features(dom, hw)
    _cpu(dom, hw)
    _clock(dom, hw)
    _sub(dom, "on_poweroff", hw.on_poweroff)
    _sub(dom, "on_reboot", hw.on_reboot)
    _sub(dom, "on_crash", hw.on_crash)
    pm = _sub(dom, "pm")
    _sub(pm, "suspend-to-mem", enabled="no")
    _sub(pm, "suspend-to-disk", enabled="no")

    devices = _sub(dom, "devices")
    sd_used = _disks(devices, hw)
    _removables(devices, hw, sd_used)
    if hw.scsi:
        _sub(devices, "controller", type="scsi", index="0", model="virtio-scsi")
    _interfaces(devices, hw)
    _consoles(devices, hw)
    if hw.graphics:
        _graphics(devices, hw)
    _sub(devices, "memballoon", model="virtio")
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    if hw.vsock:
        vsock = _sub(devices, "vsock", model="virtio")
        _sub(vsock, "cid", auto="yes")
    return dom


def build_domain(source: Source, disks: list[TargetDisk], options: DomainOptions,
                 guest: GuestInfo | None = None) -> Element:
    """The ``<domain>`` element; see :func:`build_domain_xml`."""
    require_lxml()
    return render_domain(decide_hardware(source, disks, options, guest))


def domain_xml_text(hw: TargetHardware) -> str:
    """The libvirt domain XML of ``hw`` (indented, ending in a newline)."""
    dom = render_domain(hw)
    etree.indent(dom, space="  ")
    return etree.tostring(dom, encoding="unicode", pretty_print=True)


def build_domain_xml(source: Source, disks: list[TargetDisk], options: DomainOptions,
                     guest: GuestInfo | None = None) -> str:
    """libvirt domain XML (a ``str``, indented, ending in a newline) for a converted guest.

    ``disks`` are the converted disks in boot order (the first boots);
    ``guest`` (inspection facts) only refines defaults: Windows gets a
    local-time clock, VGA video and, on KVM, Hyper-V enlightenments; an
    ``unknown`` source firmware is taken from inspection.
    Raises :class:`OutputError` for inputs libvirt would refuse.
    """
    require_lxml()
    return domain_xml_text(decide_hardware(source, disks, options, guest))
