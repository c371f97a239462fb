"""OVA/OVF: tar read in place, directories, compressed OVAs, manifests, unsafe hrefs."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import (
    NotSupportedError,
    SourceError,
    UnsafeImageError,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec, open_source
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.manifest import (
    parse_manifest,
    verify_manifest,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.ova import load, parse_ovf, unit_bytes

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parent.parent / "data"
DISK1 = b"disk-one " * 1000
DISK2 = os.urandom(3000)


def ovf(*hrefs: str, extra_disk: str = "", parent_ref: str = "") -> bytes:
    """A small VMware-style OVF with one disk per href (the first SCSI, then IDE)."""
    files = "".join(f'<File ovf:href="{h}" ovf:id="file{i}"/>' for i, h in enumerate(hrefs, 1))
    disks = "".join(
        f'<Disk ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^30" ovf:diskId="vmdisk{i}" '
        f'ovf:fileRef="file{i}" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html'
        f'#streamOptimized"{parent_ref if i == len(hrefs) else ""}/>'
        for i in range(1, len(hrefs) + 1))
    items = "".join(
        f"<Item><rasd:AddressOnParent>{i}</rasd:AddressOnParent><rasd:ElementName>Hard disk {i}"
        f"</rasd:ElementName><rasd:HostResource>ovf:/disk/vmdisk{i}</rasd:HostResource>"
        f"<rasd:InstanceID>{10 + i}</rasd:InstanceID><rasd:Parent>{3 if i == 1 else 4}</rasd:Parent>"
        f"<rasd:ResourceType>17</rasd:ResourceType></Item>"
        for i in range(1, len(hrefs) + 1) if not (extra_disk == "skip-first" and i == 1))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
 xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
 xmlns:vmw="http://www.vmware.com/schema/ovf">
 <References>{files}</References>
 <DiskSection><Info>disks</Info>{disks}</DiskSection>
 <VirtualSystem ovf:id="tiny"><Info>vm</Info><Name>tiny</Name>
  <VirtualHardwareSection><Info>hw</Info>
   <Item><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType>
    <rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
   <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID>
    <rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>512</rasd:VirtualQuantity></Item>
   <Item><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
    <rasd:ResourceType>6</rasd:ResourceType></Item>
   <Item><rasd:InstanceID>4</rasd:InstanceID><rasd:ResourceType>5</rasd:ResourceType></Item>
   {items}
   <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="bios"/>
  </VirtualHardwareSection>
 </VirtualSystem>
</Envelope>
""".encode()


def _read_at(path: str, offset: int, length: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(length)


# -- tar read in place -------------------------------------------------------

def test_tar_disks_are_located_in_place(build_ova) -> None:
    ova = build_ova({"tiny.ovf": ovf("tiny-disk1.vmdk", "tiny-disk2.vmdk"),
                     "tiny-disk1.vmdk": DISK1, "tiny-disk2.vmdk": DISK2})
    source = load(SourceSpec(input="ova", path=str(ova)))
    assert [(d.path, d.format, d.bus, d.length) for d in source.disks] == [
        (str(ova), "vmdk", "scsi", len(DISK1)), (str(ova), "vmdk", "ide", len(DISK2))]
    assert _read_at(str(ova), source.disks[0].offset, source.disks[0].length) == DISK1
    assert _read_at(str(ova), source.disks[1].offset, source.disks[1].length) == DISK2
    assert (source.name, source.vcpus, source.memory_mb, source.input) == ("tiny", 2, 512, "ova")


def test_tar_with_long_names_and_subdirectory(build_ova) -> None:
    long = "d" * 120 + ".vmdk"
    ova = build_ova({"export/vm.ovf": ovf(long), f"export/{long}": DISK2})
    disk = load(SourceSpec(input="ova", path=str(ova))).disks[0]
    assert _read_at(str(ova), disk.offset, disk.length) == DISK2


def test_sha1_and_sha256_manifests_are_verified(build_ova) -> None:
    for algorithm in ("SHA1", "SHA256"):
        ova = build_ova({"vm.ovf": ovf("d.vmdk"), "d.vmdk": DISK1}, name=f"{algorithm}.ova", manifest=algorithm)
        assert load(SourceSpec(input="ova", path=str(ova))).disks[0].length == len(DISK1)


def test_corrupt_checksum_names_file_and_both_digests(build_ova) -> None:
    good = hashlib.sha256(DISK1).hexdigest()
    bad = hashlib.sha256(b"something else").hexdigest()
    manifest = f"SHA256(vm.ovf)= {hashlib.sha256(ovf('d.vmdk')).hexdigest()}\nSHA256(d.vmdk)= {bad}\n"
    ova = build_ova({"vm.ovf": ovf("d.vmdk"), "d.vmdk": DISK1}, manifest=manifest)
    with pytest.raises(SourceError) as info:
        load(SourceSpec(input="ova", path=str(ova)))
    message = str(info.value)
    assert "checksum mismatch for 'd.vmdk'" in message
    assert bad in message and good in message
    assert str(ova) in message


def test_manifest_entry_for_a_missing_file(build_ova) -> None:
    manifest = f"SHA1(ghost.vmdk)= {hashlib.sha1(b'x').hexdigest()}\n"
    ova = build_ova({"vm.ovf": ovf("d.vmdk"), "d.vmdk": DISK1}, manifest=manifest)
    with pytest.raises(SourceError, match=r"lists 'ghost\.vmdk', which is not in the package"):
        load(SourceSpec(input="ova", path=str(ova)))


def test_manifest_parsing_errors() -> None:
    with pytest.raises(SourceError, match="line 2"):
        parse_manifest("SHA1(a)= 00\nnot a manifest line\n")
    with pytest.raises(SourceError, match="unsupported checksum algorithm 'CRC32'"):
        parse_manifest("CRC32(a)= 0011\n")
    with pytest.raises(UnsafeImageError, match=r"'\.\./etc/passwd'"):
        parse_manifest(f"SHA256(../etc/passwd)= {'0' * 64}\n")
    entries = parse_manifest("SHA256(my disk.vmdk)=  ABCDEF\nSHA512(b)= 12\n")
    assert [(e.algorithm, e.filename, e.digest) for e in entries] == [
        ("sha256", "my disk.vmdk", "abcdef"), ("sha512", "b", "12")]
    assert verify_manifest("", lambda name: None) == []


def test_ovf_referencing_a_missing_file(build_ova) -> None:
    ova = build_ova({"vm.ovf": ovf("d.vmdk", "missing.vmdk"), "d.vmdk": DISK1})
    with pytest.raises(SourceError, match=r"the OVF references 'missing\.vmdk', which is not in the package"):
        load(SourceSpec(input="ova", path=str(ova)))


def test_no_ovf_and_two_ovfs(build_ova) -> None:
    ova = build_ova({"d.vmdk": DISK1}, name="none.ova", manifest=None)
    with pytest.raises(SourceError, match=r"no \.ovf file in the package"):
        load(SourceSpec(input="ova", path=str(ova)))
    ova = build_ova({"a.ovf": ovf("d.vmdk"), "b.ovf": ovf("d.vmdk"), "d.vmdk": DISK1}, name="two.ova",
                    manifest=None)
    with pytest.raises(SourceError, match=r"2 \.ovf files in the package \(a\.ovf, b\.ovf\)"):
        load(SourceSpec(input="ova", path=str(ova)))


@pytest.mark.parametrize("href", ["../outside.vmdk", "sub/../../outside.vmdk", "/etc/passwd",
                                  "C:/Windows/disk.vmdk", "http://example.com/disk.vmdk"])
def test_href_escaping_the_archive_is_refused(build_ova, href: str) -> None:
    with pytest.raises(UnsafeImageError) as info:
        parse_ovf(ovf(href))
    assert repr(href) in str(info.value)
    ova = build_ova({"vm.ovf": ovf(href), "d.vmdk": DISK1})
    with pytest.raises(UnsafeImageError, match="OVF href"):
        load(SourceSpec(input="ova", path=str(ova)))


def test_symlink_and_hardlink_members_are_refused(build_ova) -> None:
    ova = build_ova({"vm.ovf": ovf("link.vmdk"), "d.vmdk": DISK1}, name="sym.ova", manifest=None,
                    symlinks={"link.vmdk": "/etc/shadow"})
    with pytest.raises(UnsafeImageError, match=r"OVF href 'link\.vmdk' is a symbolic link"):
        load(SourceSpec(input="ova", path=str(ova)))
    ova = build_ova({"vm.ovf": ovf("hard.vmdk"), "d.vmdk": DISK1}, name="hard.ova", manifest=None,
                    hardlinks={"hard.vmdk": "d.vmdk"})
    with pytest.raises(UnsafeImageError, match=r"OVF href 'hard\.vmdk' is a hard link"):
        load(SourceSpec(input="ova", path=str(ova)))


def test_gzip_compressed_disk_file_is_unpacked_into_the_work_dir(build_ova, tmp_path: Path) -> None:
    import gzip

    text = ovf("d.vmdk.gz").replace(b'ovf:id="file1"', b'ovf:id="file1" ovf:compression="gzip"')
    ova = build_ova({"vm.ovf": text, "d.vmdk.gz": gzip.compress(DISK1)})
    work = tmp_path / "work"
    disk = load(SourceSpec(input="ova", path=str(ova), work_dir=str(work))).disks[0]
    assert disk.offset is None and Path(disk.path).read_bytes() == DISK1
    assert Path(disk.path).is_relative_to(work) and Path(disk.path).name == "d.vmdk"
    assert load(SourceSpec(input="ova", path=str(ova), work_dir=str(work))).disks[0].path == disk.path
    with pytest.raises(SourceError, match="needs a work directory"):
        load(SourceSpec(input="ova", path=str(ova)))


def test_snapshot_chain_needs_a_directory(build_ova, tmp_path: Path) -> None:
    text = ovf("base.vmdk", "delta.vmdk", extra_disk="skip-first", parent_ref=' ovf:parentRef="vmdisk1"')
    ova = build_ova({"vm.ovf": text, "base.vmdk": DISK1, "delta.vmdk": DISK2})
    with pytest.raises(NotSupportedError, match=r"snapshot delta on 'base\.vmdk'"):
        load(SourceSpec(input="ova", path=str(ova)))
    folder = tmp_path / "extracted"
    folder.mkdir()
    (folder / "vm.ovf").write_bytes(text)
    (folder / "base.vmdk").write_bytes(DISK1)
    (folder / "delta.vmdk").write_text('# Disk DescriptorFile\nparentCID=12345678\n'
                                       'parentFileNameHint="base.vmdk"\nRW 8 SPARSE "delta-s.vmdk"\n')
    disks = load(SourceSpec(input="ova", path=str(folder))).disks
    assert [Path(d.path).name for d in disks] == ["delta.vmdk"]
    (folder / "delta.vmdk").write_text('# Disk DescriptorFile\nparentCID=12345678\n'
                                       'parentFileNameHint="other.vmdk"\nRW 8 SPARSE "delta-s.vmdk"\n')
    with pytest.raises(NotSupportedError, match=r"names parent 'other\.vmdk'"):
        load(SourceSpec(input="ova", path=str(folder)))
    (folder / "base.vmdk").unlink()
    with pytest.raises(SourceError, match=r"references 'base\.vmdk'"):
        load(SourceSpec(input="ova", path=str(folder)))


def test_parent_ref_loop_is_an_error() -> None:
    text = ovf("a.vmdk").replace(b'ovf:diskId="vmdisk1"', b'ovf:diskId="vmdisk1" ovf:parentRef="vmdisk1"')
    with pytest.raises(SourceError, match="loops"):
        parse_ovf(text)


# -- compressed OVAs ---------------------------------------------------------

@pytest.mark.parametrize("compression", ["gz", "xz"])
def test_compressed_ova_is_extracted_under_the_work_dir(build_ova, tmp_path: Path, compression: str) -> None:
    ova = build_ova({"vm.ovf": ovf("d1.vmdk", "d2.vmdk"), "d1.vmdk": DISK1, "d2.vmdk": DISK2},
                    name=f"vm.ova.{compression}", compression=compression)
    work = tmp_path / "work"
    source = open_source(SourceSpec(input="ova", path=str(ova), work_dir=str(work))).source
    assert [Path(d.path).read_bytes() for d in source.disks] == [DISK1, DISK2]
    assert all(Path(d.path).is_relative_to(work) and d.offset is None for d in source.disks)
    assert [d.bus for d in source.disks] == ["scsi", "ide"]


def test_compressed_ova_needs_a_work_dir(build_ova) -> None:
    ova = build_ova({"vm.ovf": ovf("d.vmdk"), "d.vmdk": DISK1}, compression="gz")
    with pytest.raises(SourceError, match="gzip-compressed and must be extracted, which needs a work directory"):
        load(SourceSpec(input="ova", path=str(ova)))


def test_compressed_ova_checks_manifest_and_links(build_ova, tmp_path: Path) -> None:
    manifest = f"SHA256(d.vmdk)= {hashlib.sha256(b'not it').hexdigest()}\n"
    ova = build_ova({"vm.ovf": ovf("d.vmdk"), "d.vmdk": DISK1}, name="bad.ova", compression="xz", manifest=manifest)
    with pytest.raises(SourceError, match=r"checksum mismatch for 'd\.vmdk'"):
        load(SourceSpec(input="ova", path=str(ova), work_dir=str(tmp_path / "w1")))
    ova = build_ova({"vm.ovf": ovf("l.vmdk"), "d.vmdk": DISK1}, name="link.ova", compression="gz", manifest=None,
                    symlinks={"l.vmdk": "/etc/passwd", "../evil": "x"})
    with pytest.raises(UnsafeImageError, match=r"OVF href 'l\.vmdk' is a link"):
        load(SourceSpec(input="ova", path=str(ova), work_dir=str(tmp_path / "w2")))
    assert not any(p.is_symlink() for p in (tmp_path / "w2").rglob("*"))


def test_compressed_ova_never_writes_outside_the_work_dir(tmp_path: Path) -> None:
    ova = tmp_path / "evil.ova"
    with tarfile.open(ova, "w:gz") as tar:
        for name, data in (("vm.ovf", ovf("d.vmdk")), ("d.vmdk", DISK1), ("../escaped", b"x"), ("/abs", b"y")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    work = tmp_path / "work"
    load(SourceSpec(input="ova", path=str(ova), work_dir=str(work)))
    assert not (tmp_path / "escaped").exists()
    extracted = sorted(p.name for p in work.rglob("*") if p.is_file())
    assert extracted == [".kvmigrate-extracted.json", "d.vmdk", "vm.ovf"]


def test_compressed_ova_extraction_is_reused_until_the_ova_changes(build_ova, tmp_path: Path) -> None:
    ova = build_ova({"vm.ovf": ovf("d.vmdk"), "d.vmdk": DISK1}, compression="gz")
    spec = SourceSpec(input="ova", path=str(ova), work_dir=str(tmp_path / "work"))
    first = load(spec).disks[0].path
    stamp = os.stat(first).st_mtime_ns
    assert load(spec).disks[0].path == first
    assert os.stat(first).st_mtime_ns == stamp
    os.utime(ova, ns=(stamp + 10 ** 9, stamp + 10 ** 9))
    assert load(spec).disks[0].path != first


def test_compressed_ova_extraction_others_can_write_is_not_reused(build_ova, tmp_path: Path) -> None:
    """Reuse skips the manifest check, so a cache in a shared work dir must be private to this user."""
    ova = build_ova({"vm.ovf": ovf("d.vmdk"), "d.vmdk": DISK1}, compression="gz")
    spec = SourceSpec(input="ova", path=str(ova), work_dir=str(tmp_path / "work"))
    disk = Path(load(spec).disks[0].path)
    assert disk.parent.stat().st_mode & 0o777 == 0o700
    disk.parent.chmod(0o777)
    disk.write_bytes(b"tampered")  # what another local user could do in /var/tmp
    assert Path(load(spec).disks[0].path).read_bytes() == DISK1
    assert disk.parent.stat().st_mode & 0o777 == 0o700


def test_failed_extraction_is_removed(build_ova, tmp_path: Path) -> None:
    manifest = f"SHA256(d.vmdk)= {hashlib.sha256(b'not it').hexdigest()}\n"
    ova = build_ova({"vm.ovf": ovf("d.vmdk"), "d.vmdk": DISK1}, compression="gz", manifest=manifest)
    work = tmp_path / "work"
    with pytest.raises(SourceError, match="checksum mismatch"):
        load(SourceSpec(input="ova", path=str(ova), work_dir=str(work)))
    assert list(work.iterdir()) == []


def test_zip_and_garbage_files(tmp_path: Path) -> None:
    packed = tmp_path / "vm.ova"
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("vm.ovf", ovf("d.vmdk"))
    with pytest.raises(NotSupportedError, match="zip"):
        load(SourceSpec(input="ova", path=str(packed)))
    garbage = tmp_path / "garbage.ova"
    garbage.write_bytes(b"\x00not a tar" * 10)
    with pytest.raises(SourceError, match="not an OVA"):
        load(SourceSpec(input="ova", path=str(garbage)))
    with pytest.raises(SourceError, match="does not exist"):
        load(SourceSpec(input="ova", path=str(tmp_path / "missing.ova")))


# -- directories ---------------------------------------------------------------

def _ovf_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "vm.ovf").write_bytes(ovf("d.vmdk"))
    (folder / "d.vmdk").write_bytes(DISK1)
    return folder


def test_directory_and_ovf_file(tmp_path: Path) -> None:
    folder = _ovf_dir(tmp_path)
    (folder / "vm.mf").write_text(f"SHA256(d.vmdk)= {hashlib.sha256(DISK1).hexdigest()}\n")
    for path in (folder, folder / "vm.ovf"):
        disk = load(SourceSpec(input="ova", path=str(path))).disks[0]
        assert (disk.path, disk.offset, disk.length) == (str(folder / "d.vmdk"), None, None)
    (folder / "vm.mf").write_text(f"SHA256(d.vmdk)= {hashlib.sha256(b'x').hexdigest()}\n")
    for path in (folder, folder / "vm.ovf"):
        with pytest.raises(SourceError, match="checksum mismatch"):
            load(SourceSpec(input="ova", path=str(path)))


def test_directory_symlink_escaping_is_refused(tmp_path: Path) -> None:
    folder = _ovf_dir(tmp_path)
    outside = tmp_path / "secret.img"
    outside.write_bytes(b"secret")
    (folder / "d.vmdk").unlink()
    (folder / "d.vmdk").symlink_to(outside)
    with pytest.raises(UnsafeImageError, match=r"OVF href 'd\.vmdk' resolves to .*outside"):
        load(SourceSpec(input="ova", path=str(folder)))


def test_directory_with_two_ovfs(tmp_path: Path) -> None:
    folder = _ovf_dir(tmp_path)
    (folder / "copy.ovf").write_bytes(ovf("d.vmdk"))
    with pytest.raises(SourceError, match=r"2 \.ovf files"):
        load(SourceSpec(input="ova", path=str(folder)))
    assert load(SourceSpec(input="ova", path=str(folder / "copy.ovf"))).name == "tiny"


# -- pure parsing details --------------------------------------------------------

def test_allocation_units() -> None:
    assert unit_bytes("byte * 2^20") == 1024 ** 2
    assert unit_bytes("bytes * 2^30") == 1024 ** 3
    assert unit_bytes("MegaBytes") == unit_bytes("MB") == 1024 ** 2
    assert unit_bytes(None, default=7) == 7
    with pytest.raises(SourceError, match="not understood"):
        unit_bytes("furlongs")


def test_memory_units_and_missing_firmware() -> None:
    text = ovf("d.vmdk").replace(b"byte * 2^20", b"byte * 2^30").replace(
        b'<vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="bios"/>', b"")
    source, _refs = parse_ovf(text)
    assert (source.memory_mb, source.firmware.type) == (512 * 1024, "unknown")


def test_invalid_and_unsupported_ovfs() -> None:
    with pytest.raises(SourceError, match="not valid XML"):
        parse_ovf(b"<Envelope><unclosed></Envelope>")
    with pytest.raises(SourceError, match="not <Envelope>"):
        parse_ovf(b"<domain/>")
    collection = ovf("d.vmdk").replace(b"<VirtualSystem ", b"<VirtualSystemCollection><VirtualSystem ").replace(
        b"</VirtualSystem>", b"</VirtualSystem></VirtualSystemCollection>")
    with pytest.raises(NotSupportedError, match="VirtualSystemCollection"):
        parse_ovf(collection)
    with pytest.raises(SourceError, match="refers to disk 'vmdisk9'"):
        parse_ovf(ovf("d.vmdk").replace(b"ovf:/disk/vmdisk1", b"ovf:/disk/vmdisk9"))
    with pytest.raises(NotSupportedError, match="compression 'bzip2'"):
        parse_ovf(ovf("d.vmdk").replace(b'ovf:id="file1"', b'ovf:id="file1" ovf:compression="bzip2"'))


def test_entities_are_not_expanded() -> None:
    text = ovf("d.vmdk").replace(b'<?xml version="1.0" encoding="UTF-8"?>',
                                 b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/hostname">]>')
    text = text.replace(b"<Name>tiny</Name>", b"<Name>&x;</Name>")
    source, _refs = parse_ovf(text)
    assert source.name == "tiny"  # the entity is dropped, never read; the ovf:id names the VM


def test_sample_ovfs_in_directories(data_dir: Path, tmp_path: Path) -> None:
    sample = data_dir / "ovf" / "virtualbox7-debian12-export.ovf"
    _source, refs = parse_ovf(sample.read_bytes())
    folder = tmp_path / "vbox"
    folder.mkdir()
    (folder / sample.name).write_bytes(sample.read_bytes())
    for ref in refs:
        (folder / ref.href).write_bytes(DISK1)
    loaded = load(SourceSpec(input="ova", path=str(folder)))
    assert [Path(d.path).name for d in loaded.disks] == [r.href for r in refs]
    assert loaded.hypervisor == "virtualbox" and loaded.firmware.type == "uefi"
    assert [n.mac for n in loaded.nics] == ["08:00:27:1d:9c:4a", "08:00:27:a4:b3:c2"]
