"""domain_xml and outputs/qemu_cmd: golden XML and scripts, NIC map precedence, option checks.

Every case below has ``data/domain_xml/<case>.xml`` (the libvirt XML) and
``<case>.sh`` (the ``output: qemu`` script). After an intended change,
regenerate them with::

    KVMIGRATE_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_domain_xml.py -q

and review the diff. tests/integration/test_domain_xml_libvirt.py checks the
same golden XML against libvirt's schema and drivers.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from lxml import etree

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v import domain_xml
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.domain_xml import build_domain_xml
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import OutputError, V2VError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import (
    Firmware,
    GuestInfo,
    Removable,
    Source,
    SourceCPU,
    SourceDisk,
    SourceNIC,
    TargetDisk,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.qemu_cmd import (
    OVMF_CODE,
    OVMF_CODE_SECBOOT,
    build_qemu_command,
    ovmf_files,
    render_shell_script,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.target import (
    DomainOptions,
    NICMapping,
    drive_name,
    map_nic,
)

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).resolve().parent / "data" / "domain_xml"
REGEN = os.environ.get("KVMIGRATE_REGEN_GOLDEN") == "1"
NS = {"k": domain_xml.METADATA_NS}
TCG = ["-machine", "accel=tcg", "-cpu", "max"]
STAMP = "2024-05-01T12:00:00Z"
IMAGES = "/var/lib/libvirt/images"
GiB = 1024 ** 3


def tdisk(name: str, fmt: str = "raw", bus: str = "virtio") -> TargetDisk:
    return TargetDisk(path=f"{IMAGES}/{name}", format=fmt, bus=bus, size_bytes=8 * GiB)


@dataclass
class Case:
    source: Source
    disks: list[TargetDisk]
    options: DomainOptions
    guest: GuestInfo | None = None
    qemu_kwargs: dict[str, str] = field(default_factory=dict)


def _cases() -> dict[str, Case]:
    vmware = Source(
        name="web01", hypervisor="vmware", input="vmx", memory_mb=2048, vcpus=2,
        cpu=SourceCPU(sockets=1, cores=2, threads=1),
        disks=[SourceDisk(path="/vmfs/volumes/ds1/web01/web01.vmdk", format="vmdk", bus="scsi")],
        nics=[SourceNIC(mac="00:50:56:9a:10:01", model="vmxnet3", network="VM Network")])
    uefi = Source(
        name="db01", hypervisor="vmware", input="ova", memory_mb=4096, vcpus=4,
        cpu=SourceCPU(sockets=2, cores=2, threads=1), firmware=Firmware(type="uefi", secure_boot=True),
        disks=[SourceDisk(path=f"db01-disk{i}.vmdk") for i in range(1, 4)],
        nics=[SourceNIC(mac="00:50:56:9a:20:01", model="e1000e", network="VM Network")],
        genid="1f5e4a2b-6c7d-4e8f-9a0b-1c2d3e4f5a6b")
    bridged = Source(
        name="router", hypervisor="kvm", input="libvirtxml", memory_mb=512, vcpus=1,
        disks=[SourceDisk(path="/srv/router.qcow2", format="qcow2")],
        nics=[SourceNIC(mac="52:54:00:12:34:56", model="e1000", bridge="br0"),
              SourceNIC(mac="52:54:00:12:34:57", model="e1000", network="isolated"),
              SourceNIC(mac="52:54:00:12:34:58", model="rtl8139", network="dmz")])
    scsi = Source(
        name="files", hypervisor="xen", input="libvirt", memory_mb=1024, vcpus=2,
        disks=[SourceDisk(path="/dev/vg/files-root"), SourceDisk(path="/dev/vg/files-data")],
        removables=[Removable(kind="cdrom", bus="ide", slot=2)],
        nics=[SourceNIC(mac="00:16:3e:00:00:01", bridge="xenbr0")])
    removables = Source(
        name="legacy", hypervisor="vmware", input="vmx", memory_mb=768, vcpus=1,
        disks=[SourceDisk(path="legacy.vmdk")],
        removables=[Removable(kind="cdrom", bus="ide", slot=0, path="/iso/tools.iso"),
                    Removable(kind="floppy", bus="fdc", slot=0, path="/flp/boot.flp"),
                    Removable(kind="cdrom", bus="sata", slot=1),
                    Removable(kind="floppy", bus="fdc", slot=1)],
        nics=[], display="vnc")
    windows = Source(
        name="win2019", hypervisor="hyperv", input="disk", memory_mb=8192, vcpus=4,
        cpu=SourceCPU(sockets=1, cores=4, threads=2),  # 8 != 4 vCPUs: topology dropped
        firmware=Firmware(type="uefi"), disks=[SourceDisk(path="win2019.vhdx")],
        nics=[SourceNIC(mac="00:15:5d:01:02:03", network="External")])
    win_guest = GuestInfo(root="/dev/sda3", os_type="windows", distro="windows", version="10.0",
                          major_version=10, product_name="Windows Server 2019 Standard", arch="x86_64")
    linux_guest = GuestInfo(root="/dev/sda1", os_type="linux", distro="debian", version="12",
                            major_version=12, arch="x86_64")
    unknown_fw = Source(name="appliance", hypervisor="virtualbox", input="ova", memory_mb=1024, vcpus=1,
                        firmware=Firmware(type="unknown"), nics=[SourceNIC()])
    return {
        "vmware_bios": Case(vmware, [tdisk("web01-sda")],
                            DomainOptions(networks={"VM Network": "default"}, timestamp=STAMP), linux_guest),
        "uefi_secure_boot_multidisk": Case(
            uefi, [tdisk("db01-sda", "qcow2"), tdisk("db01-sdb", "qcow2"), tdisk("db01-sdc", "raw")],
            DomainOptions(domain_type="qemu", default_network="migrated", serial_log="/var/log/kvmigrate/db01.log",
                          timestamp=STAMP, uefi_nvram=f"{IMAGES}/db01_VARS.fd"),
            linux_guest, {"qga_socket": "/run/kvmigrate/db01.qga"}),
        "bridge_by_mac": Case(
            bridged, [tdisk("router-vda", "qcow2")],
            DomainOptions(bridges={"52-54-00-12-34-56": "br-lan", "isolated": "br-iso"},
                          networks={"*": "lan", "isolated": "unused"}, vsock=True)),
        "virtio_scsi": Case(scsi, [tdisk("files-sda"), tdisk("files-sdb")],
                            DomainOptions(block_driver="virtio-scsi", bridges={"xenbr0": "br0"},
                                          disk_cache="none", name="files-kvm",
                                          uuid="6a1c1d2e-0b7a-4c55-8f7e-0d1d2c3b4a59"),
                            linux_guest),
        "removables": Case(removables, [tdisk("legacy-sda")], DomainOptions(domain_type="qemu", timestamp=STAMP)),
        "windows_localtime": Case(windows, [tdisk("win2019-sda")],
                                  DomainOptions(networks={"default": "corp"}, graphics=True,
                                                uefi_nvram=f"{IMAGES}/win2019_VARS.fd"), win_guest),
        "explicit_uefi_loader": Case(
            replace(uefi, name="db02", genid=None, nics=[]), [tdisk("db02-sda", "qcow2")],
            DomainOptions(domain_type="qemu", name="db02-converted", cpu_mode="qemu64", graphics=False,
                          uefi_loader=OVMF_CODE_SECBOOT, uefi_nvram_template="/usr/share/OVMF/OVMF_VARS_4M.ms.fd",
                          uefi_nvram=f"{IMAGES}/db02_VARS.fd", on_reboot="destroy")),
        "unknown_firmware_from_inspection": Case(
            unknown_fw, [tdisk("appliance-sda")], DomainOptions(domain_type="qemu"),
            replace(linux_guest, firmware="bios")),
    }


CASES = _cases()


def xml_of(case: Case) -> str:
    return build_domain_xml(case.source, case.disks, case.options, case.guest)


def script_of(case: Case) -> str:
    argv = build_qemu_command(case.source, case.disks, case.options, TCG, guest=case.guest, **case.qemu_kwargs)
    return render_shell_script(argv, comment=f"Boot {case.source.name} (converted by kvmigrate.v2v).")


def tree_of(case: Case) -> etree._Element:
    return etree.fromstring(xml_of(case).encode())


def check_golden(path: Path, actual: str) -> None:
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert path.is_file(), f"no golden file {path}; run with KVMIGRATE_REGEN_GOLDEN=1 and review it"
    assert actual == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_xml(case: str) -> None:
    check_golden(GOLDEN / f"{case}.xml", xml_of(CASES[case]))


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_qemu_script(case: str) -> None:
    check_golden(GOLDEN / f"{case}.sh", script_of(CASES[case]))


def test_no_stale_golden_files() -> None:
    expected = {f"{c}.{ext}" for c in CASES for ext in ("xml", "sh")}
    stale = sorted(p.name for p in GOLDEN.iterdir() if p.name not in expected)
    assert not stale, f"golden files without a case: {stale}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_xml_is_well_formed_and_deterministic(case: str) -> None:
    first = xml_of(CASES[case])
    again = xml_of(_cases()[case])  # fresh, equal objects
    assert first == again
    assert first.endswith("</domain>\n")
    root = etree.fromstring(first.encode())
    assert root.tag == "domain"
    assert root.findtext("name")


def test_vmware_bios_guest() -> None:
    root = tree_of(CASES["vmware_bios"])
    assert root.get("type") == "kvm"
    assert root.findtext("memory") == str(2048 * 1024) and root.find("memory").get("unit") == "KiB"
    assert root.findtext("currentMemory") == str(2048 * 1024)
    assert root.findtext("vcpu") == "2"
    os_el = root.find("os")
    assert os_el.get("firmware") is None and os_el.find("loader") is None
    assert os_el.find("type").attrib == {"arch": "x86_64", "machine": "q35"}
    assert root.find("cpu").get("mode") == "host-model"
    assert root.find("cpu/topology").attrib == {"sockets": "1", "dies": "1", "cores": "2", "threads": "1"}
    assert root.find("clock").get("offset") == "utc"
    assert root.find("features/smm") is None
    disk = root.find("devices/disk")
    assert disk.find("driver").attrib == {"name": "qemu", "type": "raw", "discard": "unmap"}
    assert disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}
    assert disk.find("boot").get("order") == "1"
    nic = root.find("devices/interface")
    assert nic.get("type") == "network"
    assert nic.find("mac").get("address") == "00:50:56:9a:10:01"
    assert nic.find("source").attrib == {"network": "default"}
    assert nic.find("model").get("type") == "virtio"
    assert root.find("devices/graphics") is None and root.find("devices/video") is None
    assert root.find("devices/vsock") is None
    assert root.find("devices/serial/log") is None
    assert root.find("devices/channel/target").get("name") == "org.qemu.guest_agent.0"
    assert root.findtext("devices/rng/backend") == "/dev/urandom"
    assert root.find("devices/memballoon").get("model") == "virtio"
    meta = root.find("metadata/k:conversion", NS)
    assert meta.find("k:source", NS).attrib == {"name": "web01", "hypervisor": "vmware", "input": "vmx"}
    assert meta.findtext("k:converted", namespaces=NS) == STAMP
    assert meta.find("k:guest", NS).get("distro") == "debian"


def test_uefi_secure_boot_uses_autoselection_with_smm() -> None:
    root = tree_of(CASES["uefi_secure_boot_multidisk"])
    assert root.get("type") == "qemu"
    os_el = root.find("os")
    assert os_el.get("firmware") == "efi"
    features = {f.get("name"): f.get("enabled") for f in os_el.findall("firmware/feature")}
    assert features == {"secure-boot": "yes", "enrolled-keys": "yes"}
    assert os_el.findtext("nvram") == f"{IMAGES}/db01_VARS.fd"
    assert root.find("features/smm").get("state") == "on"
    assert root.find("cpu").get("mode") == "maximum"  # TCG: no host-model
    assert root.findtext("genid") == "1f5e4a2b-6c7d-4e8f-9a0b-1c2d3e4f5a6b"
    disks = root.findall("devices/disk")
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb", "vdc"]
    assert [d.find("driver").get("type") for d in disks] == ["qcow2", "qcow2", "raw"]
    assert [d.find("boot") is not None for d in disks] == [True, False, False]
    assert root.find("devices/serial/log").attrib == {"file": "/var/log/kvmigrate/db01.log", "append": "off"}
    assert root.find("devices/interface/source").get("network") == "migrated"


def test_uefi_without_secure_boot_pins_it_off() -> None:
    root = tree_of(CASES["windows_localtime"])
    assert [(f.get("name"), f.get("enabled")) for f in root.findall("os/firmware/feature")] == [("secure-boot", "no")]
    assert root.find("features/smm") is None


def test_explicit_loader_replaces_autoselection() -> None:
    root = tree_of(CASES["explicit_uefi_loader"])
    assert root.findtext("name") == "db02-converted"
    os_el = root.find("os")
    assert os_el.get("firmware") is None and os_el.find("firmware") is None
    loader = os_el.find("loader")
    assert loader.text == OVMF_CODE_SECBOOT
    assert loader.attrib == {"readonly": "yes", "secure": "yes", "type": "pflash"}
    nvram = os_el.find("nvram")
    assert nvram.get("template") == "/usr/share/OVMF/OVMF_VARS_4M.ms.fd" and nvram.text == f"{IMAGES}/db02_VARS.fd"
    assert root.find("cpu").attrib == {"mode": "custom", "match": "exact", "check": "none"}
    assert root.findtext("cpu/model") == "qemu64"
    assert root.findtext("on_reboot") == "destroy"
    assert root.find("devices/interface") is None


def test_virtio_scsi_puts_disks_and_cdrom_on_distinct_sd_names() -> None:
    root = tree_of(CASES["virtio_scsi"])
    assert root.findtext("name") == "files-kvm"
    assert root.findtext("uuid") == "6a1c1d2e-0b7a-4c55-8f7e-0d1d2c3b4a59"
    targets = [(d.get("device"), d.find("target").get("dev"), d.find("target").get("bus"))
               for d in root.findall("devices/disk")]
    assert targets == [("disk", "sda", "scsi"), ("disk", "sdb", "scsi"), ("cdrom", "sdc", "sata")]
    controllers = root.findall("devices/controller")
    assert [c.attrib for c in controllers] == [{"type": "scsi", "index": "0", "model": "virtio-scsi"}]
    assert root.find("devices/disk/driver").get("cache") == "none"
    nic = root.find("devices/interface")
    assert nic.get("type") == "bridge" and nic.find("source").attrib == {"bridge": "br0"}


def test_removables_are_empty_and_on_sata_and_fdc() -> None:
    root = tree_of(CASES["removables"])
    media = [d for d in root.findall("devices/disk") if d.get("device") != "disk"]
    assert [(d.get("device"), d.find("target").get("dev"), d.find("target").get("bus")) for d in media] == [
        ("cdrom", "sda", "sata"), ("floppy", "fda", "fdc"), ("cdrom", "sdb", "sata"), ("floppy", "fdb", "fdc")]
    assert all(d.find("source") is None for d in media)
    assert all(d.find("readonly") is not None for d in media if d.get("device") == "cdrom")
    # the source had a VNC display: graphics kept, on loopback only
    graphics = root.find("devices/graphics")
    assert graphics.get("type") == "vnc" and graphics.get("listen") == "127.0.0.1"
    assert graphics.find("listen").get("address") == "127.0.0.1"
    assert root.find("devices/video/model").get("type") == "virtio"


def test_removables_on_i440fx_use_ide() -> None:
    case = CASES["removables"]
    xml = build_domain_xml(case.source, case.disks, replace(case.options, machine="pc"))
    root = etree.fromstring(xml.encode())
    cd = [d.find("target").attrib for d in root.findall("devices/disk") if d.get("device") == "cdrom"]
    assert cd == [{"dev": "hda", "bus": "ide"}, {"dev": "hdb", "bus": "ide"}]


def test_more_than_two_floppies_are_capped() -> None:
    case = CASES["removables"]
    source = replace(case.source, removables=[Removable(kind="floppy")] * 3)
    root = etree.fromstring(build_domain_xml(source, case.disks, case.options).encode())
    assert len(root.findall("devices/disk[@device='floppy']")) == 2


def test_windows_gets_localtime_vga_and_hyperv_on_kvm() -> None:
    case = CASES["windows_localtime"]
    root = tree_of(case)
    assert root.find("clock").get("offset") == "localtime"
    assert root.find("clock/timer[@name='hypervclock']") is not None
    assert root.find("features/hyperv") is not None
    assert root.find("devices/video/model").get("type") == "vga"
    assert root.find("cpu/topology") is None  # 1x4x2 does not add up to 4 vCPUs
    assert root.find("devices/interface/source").get("network") == "corp"
    # under TCG: no Hyper-V enlightenments, still local time
    tcg = etree.fromstring(build_domain_xml(case.source, case.disks, replace(case.options, domain_type="qemu"),
                                            case.guest).encode())
    assert tcg.find("features/hyperv") is None and tcg.find("clock/timer[@name='hypervclock']") is None
    assert tcg.find("clock").get("offset") == "localtime"
    # an explicit clock wins
    utc = build_domain_xml(case.source, case.disks, replace(case.options, clock="utc"), case.guest)
    assert "offset=\"utc\"" in utc


def test_graphics_option_overrides_source_display() -> None:
    case = CASES["removables"]
    off = build_domain_xml(case.source, case.disks, replace(case.options, graphics=False))
    assert "<graphics" not in off and "<video" not in off
    on = build_domain_xml(CASES["vmware_bios"].source, case.disks, replace(case.options, graphics=True))
    assert "<graphics" in on and "<video" in on


def test_vsock_only_when_asked() -> None:
    root = tree_of(CASES["bridge_by_mac"])
    assert root.find("devices/vsock").get("model") == "virtio"
    assert root.find("devices/vsock/cid").get("auto") == "yes"
    case = CASES["bridge_by_mac"]
    assert "<vsock" not in build_domain_xml(case.source, case.disks, replace(case.options, vsock=False))


def test_unknown_firmware_follows_inspection_and_nic_without_name() -> None:
    case = CASES["unknown_firmware_from_inspection"]
    root = tree_of(case)
    assert root.find("os").get("firmware") is None
    nic = root.find("devices/interface")
    assert nic.find("mac") is None and nic.find("source").get("network") == "default"
    uefi = build_domain_xml(case.source, case.disks, case.options, replace(case.guest, firmware="uefi"))
    assert "firmware=\"efi\"" in uefi


def test_timestamp_and_guest_are_optional_in_metadata() -> None:
    root = tree_of(CASES["bridge_by_mac"])
    meta = root.find("metadata/k:conversion", NS)
    assert meta.find("k:converted", NS) is None and meta.find("k:guest", NS) is None


def test_drive_names() -> None:
    assert [drive_name("vd", i) for i in (0, 1, 25, 26, 27, 51, 52, 701, 702)] == [
        "vda", "vdb", "vdz", "vdaa", "vdab", "vdaz", "vdba", "vdzz", "vdaaa"]
    with pytest.raises(ValueError):
        drive_name("vd", -1)


def test_many_disks_get_unique_names() -> None:
    case = CASES["vmware_bios"]
    disks = [tdisk(f"d{i}") for i in range(30)]
    root = etree.fromstring(build_domain_xml(case.source, disks, case.options).encode())
    names = [d.find("target").get("dev") for d in root.findall("devices/disk")]
    assert len(set(names)) == 30 and names[26] == "vdaa"


# --- NIC map precedence ------------------------------------------------------------------------

NET_NIC = SourceNIC(mac="00:50:56:AA:BB:01", network="VM Network")
BR_NIC = SourceNIC(mac="00:50:56:aa:bb:02", bridge="vmbr0")


@pytest.mark.parametrize(("nic", "options", "expected"), [
    # 1. a MAC key wins over everything, any spelling, and can switch the kind
    (NET_NIC, DomainOptions(networks={"VM Network": "a", "00-50-56-aa-bb-01": "by-mac"}),
     NICMapping("network", "by-mac", "mac", "00:50:56:aa:bb:01")),
    (NET_NIC, DomainOptions(networks={"VM Network": "a"}, bridges={"00:50:56:aa:bb:01": "br-mac"}),
     NICMapping("bridge", "br-mac", "mac", "00:50:56:aa:bb:01")),
    (BR_NIC, DomainOptions(bridges={"vmbr0": "x"}, networks={"00:50:56:AA:BB:02": "net-mac"}),
     NICMapping("network", "net-mac", "mac", "00:50:56:aa:bb:02")),
    # 2. the name in the map of its own kind
    (NET_NIC, DomainOptions(networks={"VM Network": "default", "*": "w"}, bridges={"VM Network": "b"}),
     NICMapping("network", "default", "name", "00:50:56:aa:bb:01")),
    (BR_NIC, DomainOptions(bridges={"vmbr0": "br0"}, networks={"vmbr0": "n"}),
     NICMapping("bridge", "br0", "name", "00:50:56:aa:bb:02")),
    # 3. the name in the other map moves it across kinds, before wildcards
    (NET_NIC, DomainOptions(bridges={"VM Network": "br0"}, networks={"*": "w"}),
     NICMapping("bridge", "br0", "name", "00:50:56:aa:bb:01")),
    (BR_NIC, DomainOptions(networks={"vmbr0": "lan"}),
     NICMapping("network", "lan", "name", "00:50:56:aa:bb:02")),
    # 4. wildcards of its own kind: '*' before 'default'
    (NET_NIC, DomainOptions(networks={"default": "d", "*": "star"}),
     NICMapping("network", "star", "wildcard", "00:50:56:aa:bb:01")),
    (NET_NIC, DomainOptions(networks={"default": "d"}, default_network="fallback"),
     NICMapping("network", "d", "wildcard", "00:50:56:aa:bb:01")),
    (BR_NIC, DomainOptions(bridges={"*": "br-all"}, networks={"*": "net-all"}),
     NICMapping("bridge", "br-all", "wildcard", "00:50:56:aa:bb:02")),
    # 5. default_network for the rest (a bridge wildcard does not catch networks)
    (NET_NIC, DomainOptions(bridges={"*": "br-all"}, default_network="fallback"),
     NICMapping("network", "fallback", "default_network", "00:50:56:aa:bb:01")),
    (BR_NIC, DomainOptions(networks={"*": "net-all"}, default_network="fallback"),
     NICMapping("network", "fallback", "default_network", "00:50:56:aa:bb:02")),
    # 6. unmapped: original kind and name kept; no name at all -> network 'default'
    (NET_NIC, DomainOptions(), NICMapping("network", "VM Network", "unmapped", "00:50:56:aa:bb:01")),
    (BR_NIC, DomainOptions(networks={"*": "net-all"}), NICMapping("bridge", "vmbr0", "unmapped", "00:50:56:aa:bb:02")),
    (SourceNIC(), DomainOptions(), NICMapping("network", "default", "unmapped", None)),
    (SourceNIC(), DomainOptions(networks={"*": "lan"}), NICMapping("network", "lan", "wildcard", None)),
])
def test_map_nic_precedence(nic: SourceNIC, options: DomainOptions, expected: NICMapping) -> None:
    assert map_nic(nic, options) == expected


def test_bridge_by_mac_golden_semantics() -> None:
    root = tree_of(CASES["bridge_by_mac"])
    nics = [(i.get("type"), i.find("mac").get("address"), next(iter(i.find("source").attrib.values())))
            for i in root.findall("devices/interface")]
    assert nics == [("bridge", "52:54:00:12:34:56", "br-lan"),      # by MAC
                    ("network", "52:54:00:12:34:57", "unused"),     # own-kind name beats the bridge map
                    ("network", "52:54:00:12:34:58", "lan")]        # '*' fallback


# --- option and input checks -------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"domain_type": "xen"}, {"block_driver": "ide"}, {"clock": "gmt"}, {"video": "vmvga"},
    {"on_crash": "explode"}, {"on_poweroff": "coredump-destroy"}, {"name": "a/b"}, {"name": " "},
    {"networks": {"": "x"}}, {"bridges": {"x": ""}}, {"machine": ""},
    {"networks": {"00:50:56:aa:bb:01": "n"}, "bridges": {"00-50-56-AA-BB-01": "b"}},
])
def test_bad_options_are_refused(kwargs: dict) -> None:
    with pytest.raises(OutputError) as err:
        DomainOptions(**kwargs)
    assert isinstance(err.value, V2VError) and err.value.hint


def test_options_mutated_after_creation_are_checked_again() -> None:
    case = CASES["vmware_bios"]
    options = replace(case.options)
    options.domain_type = "lxc"
    with pytest.raises(OutputError, match="domain_type"):
        build_domain_xml(case.source, case.disks, options)


@pytest.mark.parametrize(("source_changes", "disks", "options", "match"), [
    ({}, [], DomainOptions(), "no target disks"),
    ({}, [TargetDisk(path="/x.vmdk", format="vmdk", bus="virtio", size_bytes=1)], DomainOptions(), "vmdk"),
    ({"memory_mb": 0}, None, DomainOptions(), "not a usable size"),
    ({"vcpus": 0}, None, DomainOptions(), "not a usable size"),
    ({"firmware": Firmware("uefi", True)}, None, DomainOptions(machine="pc"), "secure boot needs a q35"),
    ({}, None, DomainOptions(uefi_loader=OVMF_CODE), "BIOS guest"),
    ({"firmware": Firmware("uefi")}, None, DomainOptions(uefi_nvram_template="/t.fd"), "needs uefi_loader"),
    ({"name": "bad/name"}, None, DomainOptions(), "domain name"),
])
def test_bad_inputs_are_refused(source_changes: dict, disks: list[TargetDisk] | None, options: DomainOptions,
                                match: str) -> None:
    case = CASES["vmware_bios"]
    source = replace(case.source, **source_changes)
    with pytest.raises(OutputError, match=match):
        build_domain_xml(source, case.disks if disks is None else disks, options)


def test_options_are_serializable() -> None:
    data = CASES["bridge_by_mac"].options.to_dict()
    assert data["bridges"] == {"52-54-00-12-34-56": "br-lan", "isolated": "br-iso"}
    assert data["vsock"] is True


# --- qemu command ------------------------------------------------------------------------------

def argv_of(case: Case, accel: list[str] | None = None) -> list[str]:
    return build_qemu_command(case.source, case.disks, case.options, TCG if accel is None else accel,
                              guest=case.guest, **case.qemu_kwargs)


def option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == option]


def test_qemu_command_bios_guest() -> None:
    argv = argv_of(CASES["vmware_bios"])
    assert argv[0] == "qemu-system-x86_64"
    assert option_values(argv, "-machine") == ["q35,accel=tcg"]
    assert option_values(argv, "-cpu") == ["max"]
    assert option_values(argv, "-m") == ["2048"]
    assert option_values(argv, "-smp") == ["2,sockets=1,cores=2,threads=1"]
    assert "-nodefaults" in argv
    drives = option_values(argv, "-drive")
    assert drives == [f"file={IMAGES}/web01-sda,format=raw,if=none,id=drive0,discard=unmap"]
    devices = option_values(argv, "-device")
    assert "virtio-blk-pci,drive=drive0,id=disk0,bootindex=1" in devices
    assert "virtio-net-pci,netdev=net0,id=nic0,mac=00:50:56:9a:10:01" in devices
    assert option_values(argv, "-netdev") == ["user,id=net0"]
    assert option_values(argv, "-serial") == ["mon:stdio"]
    assert option_values(argv, "-display") == ["none"]
    assert option_values(argv, "-rtc") == ["base=utc,driftfix=slew"]
    assert "virtio-rng-pci,rng=rng0" in devices


def test_qemu_command_uefi_secure_boot() -> None:
    argv = argv_of(CASES["uefi_secure_boot_multidisk"])
    assert option_values(argv, "-machine") == ["q35,smm=on,accel=tcg"]
    assert "driver=cfi.pflash01,property=secure,value=on" in option_values(argv, "-global")
    drives = option_values(argv, "-drive")
    assert drives[0] == f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE_SECBOOT}"
    assert drives[1] == f"if=pflash,format=raw,unit=1,file={IMAGES}/db01_VARS.fd"
    assert [d.split(",")[1] for d in drives[2:]] == ["format=qcow2", "format=qcow2", "format=raw"]
    assert option_values(argv, "-chardev")[0] == "file,id=serial0,path=/var/log/kvmigrate/db01.log"
    assert option_values(argv, "-serial") == ["chardev:serial0"]
    assert "vmgenid,guid=1f5e4a2b-6c7d-4e8f-9a0b-1c2d3e4f5a6b" in option_values(argv, "-device")
    assert any(d.endswith("name=org.qemu.guest_agent.0") for d in option_values(argv, "-device"))


def test_qemu_command_uefi_needs_a_vars_copy() -> None:
    case = CASES["uefi_secure_boot_multidisk"]
    with pytest.raises(OutputError, match="VARS") as err:
        build_qemu_command(case.source, case.disks, replace(case.options, uefi_nvram=None), TCG)
    assert "OVMF_VARS_4M.ms.fd" in str(err.value)
    assert ovmf_files(False) == (OVMF_CODE, "/usr/share/OVMF/OVMF_VARS_4M.fd")


def test_qemu_command_scsi_removables_graphics_and_escaping() -> None:
    case = CASES["virtio_scsi"]
    argv = build_qemu_command(case.source, [tdisk("a,b.img")], replace(case.options, name="x,y"), ["-accel", "kvm"])
    assert option_values(argv, "-name") == ["guest=x,,y"]
    assert option_values(argv, "-machine") == ["q35"] and option_values(argv, "-accel") == ["kvm"]
    assert option_values(argv, "-drive")[0].startswith(f"file={IMAGES}/a,,b.img,format=raw,")
    devices = option_values(argv, "-device")
    assert devices[:2] == ["virtio-scsi-pci,id=scsi0",
                           "scsi-hd,bus=scsi0.0,scsi-id=0,lun=0,drive=drive0,id=disk0,bootindex=1"]
    assert "ide-cd,bus=ide.0,id=cdrom0" in devices
    removables = argv_of(CASES["removables"])
    devices = option_values(removables, "-device")
    assert [d for d in devices if d.startswith(("ide-cd", "isa-fdc", "floppy"))] == [
        "ide-cd,bus=ide.0,id=cdrom0", "isa-fdc,id=fdc0", "floppy,unit=0,id=floppy0",
        "ide-cd,bus=ide.1,id=cdrom1", "floppy,unit=1,id=floppy1"]
    assert option_values(removables, "-vnc") == ["127.0.0.1:0,to=99"]
    assert "virtio-vga" in devices and "usb-tablet,bus=usb.0" in devices


def test_qemu_command_is_a_list_of_plain_strings() -> None:
    for case in CASES.values():
        argv = argv_of(case)
        assert all(isinstance(arg, str) and arg for arg in argv)


def test_accel_args_without_machine_value_are_refused() -> None:
    with pytest.raises(OutputError):
        argv_of(CASES["vmware_bios"], ["-machine"])


def test_shell_script_round_trips_through_sh_quoting() -> None:
    case = CASES["vmware_bios"]
    argv = build_qemu_command(case.source, [tdisk("it's a disk $(rm -rf).img")], case.options, TCG)
    script = render_shell_script(argv, comment="line one\nline two")
    assert script.startswith("#!/bin/sh\n# line one\n# line two\nexec qemu-system-x86_64 \\\n")
    assert script.endswith(' "$@"\n')
    body = script.split("exec ", 1)[1].replace("\\\n", " ")
    words = shlex.split(body)
    assert words[:-1] == argv and words[-1] == "$@"
    with pytest.raises(ValueError):
        render_shell_script([])
