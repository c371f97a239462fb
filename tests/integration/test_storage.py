"""storage.py against real qemu-img: format probing, refused headers, overlays."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v import storage
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import SourceError, UnsafeImageError

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("fmt", "qemu_fmt", "options"), [
    ("raw", "raw", []),
    ("qcow2", "qcow2", []),
    ("vmdk", "vmdk", []),
    ("vmdk", "vmdk", ["-o", "subformat=streamOptimized"]),
    ("vhd", "vpc", []),
    ("vhd", "vpc", ["-o", "subformat=fixed"]),
    ("vhdx", "vhdx", []),
    ("vdi", "vdi", []),
])
def test_probe_detects_format_and_size(tmp_path: Path, fmt: str, qemu_fmt: str, options: list[str]) -> None:
    image = tmp_path / f"disk.{fmt}"
    qemu_img("create", "-q", "-f", qemu_fmt, *options, str(image), "64M")
    info = storage.probe_image(str(image))
    assert info.format == fmt
    assert info.virtual_size >= 64 * MiB


def test_probe_monolithic_flat_vmdk_in_its_directory(tmp_path: Path) -> None:
    image = tmp_path / "guest.vmdk"
    qemu_img("create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", str(image), "32M")
    assert (tmp_path / "guest-flat.vmdk").exists()
    info = storage.probe_image(str(image))
    assert (info.format, info.virtual_size) == ("vmdk", 32 * MiB)


def test_qcow2_with_backing_file_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "evil.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/passwd", str(image), "1M")
    with pytest.raises(UnsafeImageError) as err:
        storage.probe_image(str(image))
    msg = str(err.value)
    assert str(image) in msg and "backing file" in msg and "/etc/passwd" in msg
    # also when the user claims a format: the header is checked regardless
    with pytest.raises(UnsafeImageError):
        storage.probe_image(str(image), "qcow2")


def test_qcow2_with_external_data_file_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "data.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={tmp_path / 'data.raw'}", str(image), "1M")
    with pytest.raises(UnsafeImageError, match="external data file"):
        storage.probe_image(str(image))


def test_vmdk_extent_outside_directory_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "evil.vmdk"
    image.write_text(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
        'createType="monolithicFlat"\n\n# Extent description\n'
        'RW 2048 FLAT "../../../../etc/passwd" 0\n\nddb.adapterType = "ide"\n')
    with pytest.raises(UnsafeImageError) as err:
        storage.probe_image(str(image))
    msg = str(err.value)
    assert str(image) in msg and "outside its own directory" in msg and "etc/passwd" in msg
    image.write_text(image.read_text().replace("../../../../etc/passwd", "/etc/passwd"))
    with pytest.raises(UnsafeImageError, match="outside its own directory"):
        storage.probe_image(str(image), "vmdk")


def test_vmdk_snapshot_delta_is_refused(tmp_path: Path) -> None:
    qemu_img("create", "-q", "-f", "vmdk", str(tmp_path / "base.vmdk"), "1M")
    delta = tmp_path / "base-000001.vmdk"
    qemu_img("create", "-q", "-f", "vmdk", "-F", "vmdk", "-b", str(tmp_path / "base.vmdk"), str(delta))
    with pytest.raises(UnsafeImageError, match="snapshot delta"):
        storage.probe_image(str(delta))


def test_vmdk_snapshot_chain_in_one_directory_reads_through_the_overlay(tmp_path: Path) -> None:
    """OVF snapshot chains: a delta over parents in its own directory is read as one disk, read-only."""
    src = tmp_path / "src"
    src.mkdir()
    qemu_img("create", "-q", "-f", "vmdk", str(src / "base.vmdk"), "4M")
    subprocess.run(["qemu-io", "-f", "vmdk", "-c", "write -P 0x11 1M 64k", str(src / "base.vmdk")],
                   check=True, capture_output=True)
    for child, parent in (("base-000001.vmdk", "base.vmdk"), ("base-000002.vmdk", "base-000001.vmdk")):
        # A relative parent hint, as VMware writes it.
        subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", "-F", "vmdk", "-b", parent, child],
                       check=True, capture_output=True, cwd=src)
    subprocess.run(["qemu-io", "-f", "vmdk", "-c", "write -P 0x22 0 64k", str(src / "base-000002.vmdk")],
                   check=True, capture_output=True)
    before = {f.name: sha256(f) for f in src.iterdir()}
    delta = src / "base-000002.vmdk"
    with pytest.raises(UnsafeImageError, match="snapshot delta"):
        storage.probe_image(str(delta))  # outside an OVF chain: refused as before
    info = storage.probe_image(str(delta), parents_in_dir=True)
    assert info.format == "vmdk" and info.virtual_size == 4 * MiB
    overlay = storage.create_overlay(info, str(tmp_path / "overlay.qcow2"))
    read = subprocess.run(["qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x22 0 64k", "-c", "read -P 0x11 1M 64k",
                           overlay.path], capture_output=True, text=True, check=True)
    assert "Pattern verification failed" not in read.stdout, read.stdout
    overlay.remove()
    assert {f.name: sha256(f) for f in src.iterdir()} == before
    # a parent elsewhere, or missing, is still refused
    outside = tmp_path / "outside.vmdk"
    qemu_img("create", "-q", "-f", "vmdk", str(outside), "4M")
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", "-F", "vmdk", "-b", "../outside.vmdk", "escape.vmdk"],
                   check=True, capture_output=True, cwd=src)
    with pytest.raises(UnsafeImageError, match="not in its own directory"):
        storage.probe_image(str(src / "escape.vmdk"), parents_in_dir=True)
    (src / "base.vmdk").unlink()
    with pytest.raises(SourceError, match=r"parent disk 'base\.vmdk' of this snapshot delta does not exist"):
        storage.probe_image(str(delta), parents_in_dir=True)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(b"\0" * MiB)
    with pytest.raises(SourceError, match="unknown disk format 'floppy'"):
        storage.probe_image(str(image), "floppy")
    with pytest.raises(SourceError, match="does not exist"):
        storage.probe_image(str(tmp_path / "nope.img"))


def test_wrong_explicit_format_fails_with_qemu_message(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(b"\0" * MiB)
    with pytest.raises(SourceError, match=r"qemu-img cannot open it as qcow2: .*not in qcow2 format"):
        storage.probe_image(str(image), "qcow2")


def test_overlay_never_writes_the_source(tmp_path: Path) -> None:
    source = tmp_path / "source.vmdk"
    qemu_img("create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized", str(source), "16M")
    before = sha256(source)
    info = storage.probe_image(str(source))
    overlay = storage.create_overlay(info, str(tmp_path / "overlay.qcow2"))
    # write through the overlay, as a conversion would
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 1M", overlay.path],
                   check=True, capture_output=True)
    read = subprocess.run(["qemu-io", "-f", "qcow2", "-c", "read -P 0xab 0 1M", overlay.path],
                          check=True, capture_output=True, text=True)
    assert "Pattern verification failed" not in read.stdout
    assert sha256(source) == before
    overlay.remove()
    assert not Path(overlay.path).exists()


def test_overlay_over_a_disk_inside_a_tar(tmp_path: Path) -> None:
    """A disk read in place from an uncompressed OVA: an offset/length window."""
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\x5a" * MiB)
    container = tmp_path / "container.bin"
    container.write_bytes(b"\0" * 4096 + disk.read_bytes() + b"\xff" * 4096)
    before = sha256(container)
    info = storage.probe_image(str(container), "raw", offset=4096, length=MiB)
    assert info.virtual_size == MiB
    overlay = storage.create_overlay(info, str(tmp_path / "o.qcow2"))
    read = subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"read -P 0x5a 0 {MiB}", overlay.path],
                          check=True, capture_output=True, text=True)
    assert "Pattern verification failed" not in read.stdout
    assert sha256(container) == before
