"""output: libvirt against a real libvirtd: uploads into a directory pool and a ``disk`` pool
(partitions of a loop device), byte for byte, holes included; the domain defined on the volumes;
re-runs; cleanup after failures."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.domain_xml import build_domain_xml
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import OutputError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt import domain as ld
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt.volumes import delete_volume
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Source, TargetDisk
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs import libvirt as out
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.target import DomainOptions
from tests.libvirtd import PrivateLibvirtd

pytestmark = pytest.mark.integration

SIZE = 64 << 20
# (offset, length, byte): data between holes, up to the very last MiB
PATTERN = [(0, 1 << 20, 0x5A), (10 << 20, 3 << 20, 0x33), (40 << 20, 64 << 10, 0x01), (63 << 20, 1 << 20, 0x77)]


@pytest.fixture(autouse=True)
def _tcg(monkeypatch: pytest.MonkeyPatch) -> None:
    # KVM does not run guests here; skip the probe
    monkeypatch.setenv("KVMIGRATE_ACCEL", "tcg")


def pattern_image(path: Path, fmt: str) -> TargetDisk:
    """A 64 MiB image with data at known places and holes elsewhere (written by qemu-io)."""
    raw = path.with_name(path.stem + "-data.raw") if fmt == "qcow2" else path
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(raw), str(SIZE)], check=True)
    writes = [arg for off, length, byte in PATTERN for arg in ("-c", f"write -P {byte:#x} {off} {length}")]
    subprocess.run(["qemu-io", "-f", "raw", *writes, str(raw)], check=True, capture_output=True)
    if fmt == "qcow2":
        subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(path)], check=True)
        raw.unlink()
    return TargetDisk(path=str(path), format=fmt, bus="virtio", size_bytes=SIZE)


def digest(path: str | Path, length: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        left = length
        while left:
            chunk = handle.read(min(1 << 20, left))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def expected_digest() -> str:
    data = bytearray(SIZE)
    for off, length, byte in PATTERN:
        data[off:off + length] = bytes([byte]) * length
    return hashlib.sha256(bytes(data)).hexdigest()


def partitions(device: str) -> list[str]:
    text = subprocess.run(["parted", "-s", "-m", device, "unit", "B", "print"], capture_output=True, text=True,
                          check=True).stdout
    return [line for line in text.splitlines()[2:] if line.strip()]


def pool_volumes(libvirtd: PrivateLibvirtd, pool: str) -> list[str]:
    return libvirtd.volumes(pool)


# --- uploads ---------------------------------------------------------------------------------------

def test_upload_into_a_dir_pool_raw_and_qcow2(libvirt_conn: Any, libvirtd: PrivateLibvirtd, dir_pool: Any,
                                              tmp_path: Path) -> None:
    raw = pattern_image(tmp_path / "src.raw", "raw")
    qcow2 = pattern_image(tmp_path / "src.qcow2", "qcow2")
    volumes = out.upload_to_pool(libvirt_conn, dir_pool.name, [raw, qcow2], ["kvt-up-vda", "kvt-up-vdb"],
                                 uri=libvirtd.uri, devs=["vda", "vdb"])
    try:
        assert [(v.name, v.format, v.capacity) for v in volumes] == [
            ("kvt-up-vda.raw", "raw", SIZE), ("kvt-up-vdb.qcow2", "qcow2", SIZE)]
        assert volumes[0].path == str(dir_pool.path / "kvt-up-vda.raw")
        # byte for byte, and still sparse: only the data was sent
        assert digest(volumes[0].path, SIZE + 1) == expected_digest()
        assert Path(volumes[0].path).stat().st_blocks * 512 < 8 << 20
        assert volumes[0].bytes_uploaded == sum(length for _o, length, _b in PATTERN)
        assert Path(volumes[1].path).read_bytes() == Path(qcow2.path).read_bytes()
        # libvirt's own view: format and virtual size of the qcow2, the data through vol-download
        xml = etree.fromstring(libvirtd.virsh("vol-dumpxml", "--pool", dir_pool.name, "kvt-up-vdb.qcow2").stdout
                               .encode())
        assert xml.find("target/format").get("type") == "qcow2" and xml.findtext("capacity") == str(SIZE)
        downloaded = tmp_path / "down.raw"
        libvirtd.virsh("vol-download", "--pool", dir_pool.name, "kvt-up-vda.raw", str(downloaded))
        assert digest(downloaded, SIZE + 1) == expected_digest()
    finally:
        for vol in volumes:
            libvirtd.virsh("vol-delete", "--pool", dir_pool.name, vol.name, check=False)


def test_upload_into_a_disk_pool_zeroes_holes(libvirt_conn: Any, libvirtd: PrivateLibvirtd, disk_pool: Any,
                                              tmp_path: Path) -> None:
    """The loop device was filled with 0xaa: a hole that was skipped instead of written would show."""
    raw = pattern_image(tmp_path / "src.raw", "raw")
    volumes = out.upload_to_pool(libvirt_conn, disk_pool.name, [raw], ["ignored"], uri=libvirtd.uri)
    try:
        (vol,) = volumes
        base = Path(disk_pool.loop.device).name
        assert vol.name == f"{base}p1" and vol.path == f"{disk_pool.loop.device}p1" and vol.format == "raw"
        assert vol.capacity == SIZE
        assert digest(vol.path, SIZE) == expected_digest()
        assert len(partitions(disk_pool.loop.device)) == 1
    finally:
        for vol in volumes:
            delete_volume(libvirt_conn, libvirt_conn.storagePoolLookupByName(disk_pool.name)
                          .storageVolLookupByName(vol.name), uri=libvirtd.uri)
    assert partitions(disk_pool.loop.device) == [] and pool_volumes(libvirtd, disk_pool.name) == []


def test_qcow2_cannot_go_into_a_disk_pool(libvirt_conn: Any, libvirtd: PrivateLibvirtd, disk_pool: Any,
                                          tmp_path: Path) -> None:
    qcow2 = pattern_image(tmp_path / "src.qcow2", "qcow2")
    with pytest.raises(OutputError) as err:
        out.upload_to_pool(libvirt_conn, disk_pool.name, [qcow2], ["x"], uri=libvirtd.uri)
    assert "a 'disk' storage pool holds raw volumes only, not qcow2" in str(err.value)
    assert "output_format: raw" in str(err.value)
    assert partitions(disk_pool.loop.device) == []


@pytest.mark.parametrize("pool_kind", ["dir", "disk"])
def test_a_failed_upload_removes_the_volumes_it_created(pool_kind: str, libvirt_conn: Any,
                                                        libvirtd: PrivateLibvirtd, request: pytest.FixtureRequest,
                                                        tmp_path: Path) -> None:
    pool = request.getfixturevalue(f"{pool_kind}_pool")
    first = pattern_image(tmp_path / "one.raw", "raw")
    second = pattern_image(tmp_path / "two.raw", "raw")

    def interrupted(percent: float) -> None:
        if percent > 60:
            raise KeyboardInterrupt("interrupted during the second disk")

    with pytest.raises(KeyboardInterrupt):
        out.upload_to_pool(libvirt_conn, pool.name, [first, second], ["kvt-fail-vda", "kvt-fail-vdb"],
                           uri=libvirtd.uri, progress=interrupted)
    assert pool_volumes(libvirtd, pool.name) == []
    if pool_kind == "disk":
        assert partitions(pool.loop.device) == []
    missing = TargetDisk(path=str(tmp_path / "missing.raw"), format="raw", bus="virtio", size_bytes=SIZE)
    with pytest.raises(OutputError) as err:
        out.upload_to_pool(libvirt_conn, pool.name, [first, missing], ["kvt-fail-vda", "kvt-fail-vdb"],
                           uri=libvirtd.uri)
    assert f"cannot read the converted disk {missing.path}" in str(err.value)
    assert pool_volumes(libvirtd, pool.name) == []


def test_a_missing_pool_is_a_clear_error(libvirt_conn: Any, libvirtd: PrivateLibvirtd, tmp_path: Path) -> None:
    raw = pattern_image(tmp_path / "src.raw", "raw")
    with pytest.raises(OutputError) as err:
        out.plan_libvirt_output(out.LibvirtOutputOptions(uri=libvirtd.uri, pool="kvt-nopool"), "g", [raw], "f" * 64,
                                conn=libvirt_conn)
    assert "the storage pool 'kvt-nopool' does not exist" in str(err.value)


# --- the whole output: upload, define, re-run, replace, remove --------------------------------------

def converted_guest(tmp_path: Path, name: str, fmt: str) -> tuple[list[TargetDisk], str]:
    disks = [pattern_image(tmp_path / f"{name}-vda.{fmt}", fmt)]
    source = Source(name=name, hypervisor="vmware", input="vmx", memory_mb=256, vcpus=1)
    xml = build_domain_xml(source, disks, DomainOptions(domain_type="qemu", serial_log=str(tmp_path / "serial.log")))
    return disks, xml


def test_dir_pool_output_rerun_and_replacement(libvirt_conn: Any, libvirtd: PrivateLibvirtd, dir_pool: Any,
                                               tmp_path: Path) -> None:
    name = "kvt-out-dir"
    disks, xml = converted_guest(tmp_path, name, "qcow2")
    options = out.LibvirtOutputOptions(uri=libvirtd.uri, pool=dir_pool.name)
    fingerprint = "a" * 64
    try:
        plan = out.plan_libvirt_output(options, name, disks, fingerprint, output_format="qcow2", conn=libvirt_conn)
        assert plan.current is None and plan.pool_type == "dir" and plan.disk_format == "qcow2"
        assert plan.domain_type == "qemu" and len(plan.steps) == 2
        target = out.write_libvirt_output(options, name, disks, xml, fingerprint, conn=libvirt_conn)
        assert target.actions == [f"upload volume {dir_pool.name}/{name}-vda.qcow2", "define"]
        data = target.to_dict()
        assert data["disks"][0]["path"] == str(dir_pool.path / f"{name}-vda.qcow2")
        assert data["domain"]["state"] == "shutdown"
        defined = etree.fromstring(libvirtd.virsh("dumpxml", "--inactive", name).stdout.encode())
        disk = defined.find("devices/disk")
        assert disk.get("type") == "volume" and disk.find("source").get("volume") == f"{name}-vda.qcow2"
        assert disk.find("driver").get("type") == "qcow2"
        uuid = defined.findtext("uuid")
        # the same conversion again: nothing to do
        again = out.plan_libvirt_output(options, name, disks, fingerprint, output_format="qcow2", conn=libvirt_conn)
        assert again.current is not None and [v.name for v in again.current.volumes] == [f"{name}-vda.qcow2"]
        assert again.current.to_dict()["domain_xml"] == libvirtd.virsh("dumpxml", "--inactive", name).stdout
        # define_domain with this result changes nothing either
        same = ld.ensure_domain(ld.DomainRequest(uri=libvirtd.uri, xml=ld.xml_from_converted({"target": data})),
                                conn=libvirt_conn)
        assert not same.changed
        # a changed source: new volumes first, then the definition (same UUID), then the old volumes go
        replaced = out.write_libvirt_output(options, name, disks, xml, "b" * 64, conn=libvirt_conn)
        assert replaced.actions == [f"upload volume {dir_pool.name}/{name}-vda-bbbbbbbb.qcow2", "redefine",
                                    f"delete volume {dir_pool.name}/{name}-vda.qcow2 (previous conversion)"]
        assert sorted(pool_volumes(libvirtd, dir_pool.name)) == [f"{name}-vda-bbbbbbbb.qcow2"]
        assert libvirtd.virsh("domuuid", name).stdout.strip() == uuid
    finally:
        ld.ensure_domain(ld.DomainRequest(uri=libvirtd.uri, name=name, state="absent", remove_storage=True),
                         conn=libvirt_conn)
    assert name not in libvirtd.domains() and pool_volumes(libvirtd, dir_pool.name) == []


def test_disk_pool_output_started_then_removed(libvirt_conn: Any, libvirtd: PrivateLibvirtd, disk_pool: Any,
                                               tmp_path: Path) -> None:
    name = "kvt-out-disk"
    disks, xml = converted_guest(tmp_path, name, "raw")
    options = out.LibvirtOutputOptions(uri=libvirtd.uri, pool=disk_pool.name, start=True)
    try:
        target = out.write_libvirt_output(options, name, disks, xml, "c" * 64, conn=libvirt_conn)
        part = f"{Path(disk_pool.loop.device).name}p1"
        assert target.actions == [f"upload volume {disk_pool.name}/{part}", "define", "start"]
        assert target.domain["state"] == "running"
        live = etree.fromstring(libvirtd.virsh("dumpxml", name).stdout.encode())
        assert live.find("devices/disk/source").get("volume") == part
        assert digest(f"{disk_pool.loop.device}p1", SIZE) == expected_digest()
        current = out.plan_libvirt_output(options, name, disks, "c" * 64, conn=libvirt_conn).current
        assert current is not None and current.volumes[0].path == f"{disk_pool.loop.device}p1"
        with pytest.raises(OutputError) as err:
            out.plan_libvirt_output(options, name, disks, "d" * 64, conn=libvirt_conn)
        assert f"the domain {name} is running; converting again would replace its disks" in str(err.value)
        gone = ld.ensure_domain(ld.DomainRequest(uri=libvirtd.uri, name=name, state="absent", remove_storage=True),
                                conn=libvirt_conn)
        assert gone.actions == ["destroy", "undefine", f"delete volume {disk_pool.name}/{part}"]
    finally:
        libvirtd.virsh("destroy", name, check=False)
        libvirtd.virsh("undefine", name, check=False)
    assert name not in libvirtd.domains()
    assert pool_volumes(libvirtd, disk_pool.name) == [] and partitions(disk_pool.loop.device) == []


def test_a_foreign_domain_of_the_same_name_is_not_replaced(libvirt_conn: Any, libvirtd: PrivateLibvirtd,
                                                           dir_pool: Any, tmp_path: Path) -> None:
    name = "kvt-foreign"
    disks, xml = converted_guest(tmp_path, name, "raw")
    plain = tmp_path / "plain.xml"
    plain.write_text(xml)  # file disks, no output record
    libvirtd.virsh("define", str(plain))
    try:
        with pytest.raises(OutputError) as err:
            out.write_libvirt_output(out.LibvirtOutputOptions(uri=libvirtd.uri, pool=dir_pool.name), name, disks,
                                     xml, "e" * 64, conn=libvirt_conn)
        assert f"a domain named {name} already exists" in str(err.value) and "force: true" in str(err.value)
        assert pool_volumes(libvirtd, dir_pool.name) == []
    finally:
        libvirtd.virsh("undefine", name, check=False)


def test_domain_type_follows_the_host(libvirt_conn: Any, libvirtd: PrivateLibvirtd,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert out.choose_domain_type(libvirt_conn, libvirtd.uri) == "qemu"  # KVMIGRATE_ACCEL=tcg
    monkeypatch.setenv("KVMIGRATE_ACCEL", "kvm")
    try:
        libvirt_conn.getDomainCapabilities(None, "x86_64", None, "kvm", 0)
        offered = "kvm"
    except Exception:
        offered = "qemu"
    assert out.choose_domain_type(libvirt_conn, libvirtd.uri) == offered
