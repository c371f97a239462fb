"""VMX parsing quirks, snapshot refusal and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import NotSupportedError, SourceError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.vmx import (
    decode_vmx,
    genid_from_vmx,
    load,
    parse_vmx,
    parse_vmx_keys,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.vmdk import parse_descriptor, read_vmdk_info

pytestmark = pytest.mark.unit

MINIMAL = 'displayName = "vm1"\nmemsize = "1024"\nscsi0.virtualDev = "pvscsi"\nscsi0:0.fileName = "vm1.vmdk"\n'

DESCRIPTOR = """# Disk DescriptorFile
version=1
CID=fb183c20
parentCID={parent}
createType="vmfs"
{hint}
# Extent description
RW 41943040 VMFS "vm1-flat.vmdk"
"""


def _parse(text: str) -> dict:
    return parse_vmx(text, vmx_dir="/ds/vm1").to_dict()


def test_keys_are_case_insensitive_and_values_unescaped() -> None:
    keys = parse_vmx_keys('DisplayName = "a |22quoted|22 |7C name"\nMEMSIZE="512"\nnumvcpus = 2\n')
    assert keys == {"displayname": 'a "quoted" | name', "memsize": "512", "numvcpus": "2"}
    source = parse_vmx('DISPLAYNAME = "x"\nMemSize = "512"\nNumVCPUs = "2"\n', vmx_dir="/d")
    assert (source.name, source.memory_mb, source.vcpus) == ("x", 512, 2)


def test_defaults_follow_virt_v2v() -> None:
    source = parse_vmx('displayName = "bare"\n', vmx_dir="/d")
    assert (source.memory_mb, source.vcpus, source.firmware.type, source.disks) == (32, 1, "bios", [])


def test_name_falls_back_to_the_file_name_and_is_required() -> None:
    assert parse_vmx('memsize = "64"\n', vmx_dir="/d", default_name="from-file").name == "from-file"
    with pytest.raises(SourceError, match="no displayName"):
        parse_vmx('memsize = "64"\n', vmx_dir="/d")


@pytest.mark.parametrize(("line", "number"), [
    ('this line has no equals sign', 3),
    ('key = "unterminated', 3),
    ('key = "value" trailing garbage', 3),
    ('= "no key"', 3),
])
def test_malformed_line_names_its_number(line: str, number: int) -> None:
    text = f'.encoding = "UTF-8"\ndisplayName = "vm"\n{line}\nmemsize = "4"\n'
    with pytest.raises(SourceError, match=rf"malformed VMX line {number}\b"):
        parse_vmx(text, vmx_dir="/d")


def test_comments_and_blank_lines_are_fine() -> None:
    text = '# VMware\n\n   \ndisplayName = "vm" # trailing comment\n'
    assert parse_vmx(text, vmx_dir="/d").name == "vm"


def test_not_a_number_is_reported() -> None:
    with pytest.raises(SourceError, match="memSize = 'lots' is not a number"):
        parse_vmx('displayName = "vm"\nmemSize = "lots"\n', vmx_dir="/d")


def test_scsi_controller_models_and_relative_paths() -> None:
    text = (MINIMAL + 'scsi1.virtualDev = "lsisas1068"\nscsi1:3.fileName = "../other/d2.vmdk"\n'
            'scsi2.virtualDev = "BusLogic"\nscsi2:0.fileName = "/vmfs/volumes/ds2/d3.vmdk"\n'
            'scsi3.virtualDev = "lsilogic"\nscsi3:0.fileName = "d4.vmdk"\n')
    disks = _parse(text)["disks"]
    assert [(d["path"], d["controller"]) for d in disks] == [
        ("/ds/vm1/vm1.vmdk", "pvscsi"),
        ("/ds/other/d2.vmdk", "lsisas1068"),
        ("/vmfs/volumes/ds2/d3.vmdk", "buslogic"),
        ("/ds/vm1/d4.vmdk", "lsilogic"),
    ]


def test_disk_order_is_bus_then_controller_then_unit() -> None:
    text = ('displayName = "vm"\n'
            'ide0:0.deviceType = "ata-hardDisk"\nide0:0.fileName = "ide.vmdk"\n'
            'sata0:0.fileName = "sata.vmdk"\n'
            'nvme0:0.fileName = "nvme.vmdk"\n'
            'scsi0:10.fileName = "scsi-10.vmdk"\nscsi0:2.fileName = "scsi-2.vmdk"\n'
            'scsi1:0.fileName = "scsi1-0.vmdk"\n')
    disks = _parse(text)["disks"]
    assert [(d["bus"], d["path"].rsplit("/", 1)[1]) for d in disks] == [
        ("scsi", "scsi-2.vmdk"), ("scsi", "scsi-10.vmdk"), ("scsi", "scsi1-0.vmdk"),
        ("nvme", "nvme.vmdk"), ("sata", "sata.vmdk"), ("ide", "ide.vmdk"),
    ]


def test_absent_devices_and_controllers_are_skipped() -> None:
    text = (MINIMAL + 'scsi0:1.fileName = "gone.vmdk"\nscsi0:1.present = "FALSE"\n'
            'scsi1.present = "FALSE"\nscsi1:0.fileName = "gone2.vmdk"\n'
            'scsi0:2.deviceType = "scsi-passthru"\nscsi0:2.fileName = "/dev/sg2"\n')
    assert [d["path"] for d in _parse(text)["disks"]] == ["/ds/vm1/vm1.vmdk"]


def test_cdrom_slots() -> None:
    text = (MINIMAL
            + 'ide1:0.deviceType = "cdrom-image"\nide1:0.fileName = "boot.iso"\n'
            'ide0:1.deviceType = "atapi-cdrom"\nide0:1.fileName = "auto detect"\nide0:1.startConnected = "FALSE"\n'
            'sata1:2.deviceType = "cdrom-raw"\nsata1:2.fileName = "/dev/sr0"\n'
            'sata0:0.deviceType = "cdrom-image"\nsata0:0.fileName = "x.iso"\nsata0:0.startConnected = "FALSE"\n'
            'scsi0:5.deviceType = "cdrom-image"\nscsi0:5.fileName = "/iso/tools.iso"\n')
    removables = [(r["kind"], r["bus"], r["slot"], r["path"]) for r in _parse(text)["removables"]]
    assert removables == [
        ("cdrom", "scsi", 5, "/iso/tools.iso"),
        ("cdrom", "sata", 32, None),
        ("cdrom", "ide", 1, None),
        ("cdrom", "ide", 2, "/ds/vm1/boot.iso"),
    ]


def test_floppies_only_when_connected_to_an_image_or_device() -> None:
    text = (MINIMAL + 'floppy0.fileType = "file"\nfloppy0.fileName = "drivers.flp"\n'
            'floppy1.fileType = "device"\nfloppy1.fileName = "/dev/fd0"\n'
            'floppy2.clientDevice = "TRUE"\nfloppy2.fileName = "vmware-null-remote-floppy"\n'
            'floppy3.startConnected = "FALSE"\nfloppy3.fileName = "x.flp"\n'
            'floppy4.present = "FALSE"\nfloppy4.fileName = "y.flp"\n')
    removables = [(r["kind"], r["bus"], r["slot"], r["path"]) for r in _parse(text)["removables"]]
    assert removables == [("floppy", "fdc", 0, "/ds/vm1/drivers.flp"), ("floppy", "fdc", 1, None)]


@pytest.mark.parametrize(("lines", "mac"), [
    ('ethernet0.addressType = "generated"\nethernet0.generatedAddress = "00:0C:29:AA:BB:CC"\n', "00:0c:29:aa:bb:cc"),
    ('ethernet0.addressType = "vpx"\nethernet0.generatedAddress = "00:50:56:9b:00:01"\n', "00:50:56:9b:00:01"),
    ('ethernet0.addressType = "static"\nethernet0.address = "00:50:56:00:00:07"\n'
     'ethernet0.generatedAddress = "00:50:56:9b:99:99"\n', "00:50:56:00:00:07"),
    ('ethernet0.addressType = "generated"\n', None),
])
def test_nic_mac_by_address_type(lines: str, mac: str | None) -> None:
    nics = _parse(MINIMAL + 'ethernet0.present = "TRUE"\nethernet0.virtualDev = "vmxnet3"\n' + lines)["nics"]
    assert nics == [{"mac": mac, "model": "vmxnet3", "network": "ethernet0", "bridge": None}]


def test_nic_network_bridge_order_and_absent() -> None:
    text = (MINIMAL
            + 'ethernet1.present = "TRUE"\nethernet1.networkName = "Backup"\nethernet1.virtualDev = "E1000E"\n'
            'ethernet0.present = "TRUE"\nethernet0.connectionType = "bridged"\n'
            'ethernet2.present = "FALSE"\nethernet2.networkName = "Old"\n'
            'ethernet10.present = "TRUE"\nethernet10.networkName = "Ten"\nethernet10.connectionType = "custom"\n')
    nics = [(n["network"], n["bridge"], n["model"]) for n in _parse(text)["nics"]]
    assert nics == [(None, "ethernet0", None), ("Backup", None, "e1000e"), ("Ten", None, None)]


def test_firmware_secure_boot_topology_sound_display_genid() -> None:
    text = (MINIMAL + 'firmware = "EFI"\nuefi.secureBoot.enabled = "TRUE"\nnumvcpus = "6"\n'
            'cpuid.coresPerSocket = "3"\nsound.present = "TRUE"\nsound.virtualDev = "es1371"\n'
            'RemoteDisplay.vnc.enabled = "true"\nvm.genid = "-570734802784577186"\n'
            'vm.genidX = "-5042519231342505152"\nsvga.present = "TRUE"\nvmci0.present = "TRUE"\n')
    data = _parse(text)
    assert (data["firmware"], data["secure_boot"]) == ("uefi", True)
    assert (data["cpu"]["sockets"], data["cpu"]["cores"], data["cpu"]["threads"]) == (2, 3, 1)
    assert (data["sound"], data["display"]) == ("es1370", "vnc")
    assert data["genid"] == "8312995e-57b8-f814-4013-c1ba795f05ba"


def test_secure_boot_needs_efi_and_bad_topology_is_dropped() -> None:
    data = _parse(MINIMAL + 'uefi.secureBoot.enabled = "TRUE"\nnumvcpus = "2"\ncpuid.coresPerSocket = "4"\n'
                  'sound.present = "FALSE"\nsound.virtualDev = "hdaudio"\n')
    assert (data["firmware"], data["secure_boot"], data["cpu"]["sockets"], data["sound"]) == ("bios", False, None, None)


def test_genid_layout() -> None:
    assert genid_from_vmx(0x0011223344556677, 0x0123456789ABCDEF) == "44556677-2233-0011-efcd-ab8967452301"
    # negative halves are two's complement, as VMware writes them
    assert genid_from_vmx(-1, -1) == "ffffffff-ffff-ffff-ffff-ffffffffffff"


def test_decode_vmx_uses_the_encoding_line() -> None:
    data = '.encoding = "windows-1252"\ndisplayName = "Büro"\n'.encode("cp1252")
    assert parse_vmx(decode_vmx(data), vmx_dir="/d").name == "Büro"
    assert decode_vmx('displayName = "Büro"\n'.encode()) == 'displayName = "Büro"\n'
    with pytest.raises(SourceError, match="not a known character set"):
        decode_vmx(b'.encoding = "no-such-charset"\n')


@pytest.mark.parametrize("filename", ["vm1-000001.vmdk", "vm1-000012.VMDK"])
def test_snapshot_delta_disk_is_refused(filename: str) -> None:
    text = f'displayName = "vm1"\nscsi0:0.fileName = "{filename}"\n'
    with pytest.raises(SourceError, match="snapshot deltas") as info:
        parse_vmx(text, vmx_dir="/d")
    assert filename in str(info.value)
    assert "Consolidate or delete all snapshots" in str(info.value)


def test_snapshot_keys_are_refused_but_snapshot_settings_are_not() -> None:
    assert parse_vmx('displayName = "vm"\nsnapshot.action = "keep"\nsnapshot.numSnapshots = "0"\n',
                     vmx_dir="/d").name == "vm"
    with pytest.raises(SourceError, match="has snapshots: 1 snapshot"):
        parse_vmx('displayName = "vm"\nsnapshot0.uid = "1"\nsnapshot0.displayName = "before patch"\n',
                  vmx_dir="/d")


def _vm_dir(tmp_path: Path, text: str = MINIMAL) -> Path:
    vmx = tmp_path / "vm1.vmx"
    vmx.write_text(text)
    (tmp_path / "vm1.vmdk").write_text(DESCRIPTOR.format(parent="ffffffff", hint=""))
    return vmx


def test_load_resolves_disks_and_reads_descriptor_size(tmp_path: Path) -> None:
    source = load(SourceSpec(input="vmx", path=str(_vm_dir(tmp_path))))
    assert source.disks[0].path == str(tmp_path / "vm1.vmdk")
    assert source.disks[0].size_bytes == 41943040 * 512


def test_load_refuses_snapshots_in_vmsd(tmp_path: Path) -> None:
    vmx = _vm_dir(tmp_path)
    (tmp_path / "vm1.vmsd").write_text('.encoding = "UTF-8"\nsnapshot.lastUID = "2"\nsnapshot.numSnapshots = "2"\n'
                                       'snapshot0.uid = "1"\nsnapshot1.uid = "2"\n')
    with pytest.raises(SourceError, match=r"vm1\.vmsd lists 2 snapshot\(s\).*snapshot deltas"):
        load(SourceSpec(input="vmx", path=str(vmx)))
    (tmp_path / "vm1.vmsd").write_text('.encoding = "UTF-8"\nsnapshot.numSnapshots = "0"\n')
    assert load(SourceSpec(input="vmx", path=str(vmx))).name == "vm1"


def test_load_refuses_a_delta_descriptor(tmp_path: Path) -> None:
    vmx = _vm_dir(tmp_path)
    (tmp_path / "vm1.vmdk").write_text(DESCRIPTOR.format(parent="fb183c20", hint='parentFileNameHint="base.vmdk"'))
    with pytest.raises(SourceError, match=r"has parent disk 'base\.vmdk'.*snapshot deltas"):
        load(SourceSpec(input="vmx", path=str(vmx)))


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        load(SourceSpec(input="vmx", path=str(tmp_path / "nope.vmx")))
    vmx = tmp_path / "bad.vmx"
    vmx.write_text('displayName = "vm"\nbroken line\n')
    with pytest.raises(SourceError, match=r"bad\.vmx: malformed VMX line 2"):
        load(SourceSpec(input="vmx", path=str(vmx)))
    vmx.write_text('displayName = "vm"\nscsi0:0.fileName = "missing.vmdk"\n')
    with pytest.raises(SourceError, match=r"disk '.*missing\.vmdk' of VM 'vm' does not exist"):
        load(SourceSpec(input="vmx", path=str(vmx)))
    with pytest.raises(NotSupportedError):
        load(SourceSpec(input="vmx", path="ssh://root@esxi/vmfs/volumes/ds/vm/vm.vmx"))


def test_vmdk_descriptor_and_sparse_header(tmp_path: Path) -> None:
    info = parse_descriptor(DESCRIPTOR.format(parent="ffffffff", hint=""))
    assert (info.create_type, info.size_bytes, info.extents, info.is_delta) == \
        ("vmfs", 41943040 * 512, ["vm1-flat.vmdk"], False)
    sparse = tmp_path / "s.vmdk"
    header = b"KDMV" + (1).to_bytes(4, "little") + (3).to_bytes(4, "little") + (2048).to_bytes(8, "little") \
        + (128).to_bytes(8, "little") + (1).to_bytes(8, "little") + (1).to_bytes(8, "little")
    text = b'# Disk DescriptorFile\nparentCID=ffffffff\ncreateType="monolithicSparse"\nRW 2048 SPARSE "s.vmdk"\n'
    sparse.write_bytes(header.ljust(512, b"\0") + text.ljust(512, b"\0"))
    info = read_vmdk_info(str(sparse))
    assert info is not None
    assert (info.create_type, info.size_bytes) == ("monolithicSparse", 2048 * 512)
    raw = tmp_path / "raw.img"
    raw.write_bytes(b"\0" * 1024)
    assert read_vmdk_info(str(raw)) is None


def test_text_descriptor_padded_with_nuls(tmp_path: Path) -> None:
    padded = tmp_path / "padded.vmdk"
    padded.write_bytes(DESCRIPTOR.format(parent="ffffffff", hint="").encode().ljust(4096, b"\0"))
    info = read_vmdk_info(str(padded))
    assert info is not None and info.size_bytes == 41943040 * 512
    binary = tmp_path / "binary.img"
    binary.write_bytes(b"# Disk DescriptorFile\n\0\0\x7fELF more data")
    assert read_vmdk_info(str(binary)) is None
