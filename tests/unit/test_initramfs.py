"""The initramfs reader, on archives made here with the host's cpio and compressors."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.convert.linux.converter import (
    _initramfs_names,
    _module_name,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.convert.linux.initramfs import (
    InitramfsUnreadable,
    read_initramfs,
)

pytestmark = pytest.mark.unit
VERSION = "6.1.0-50-amd64"
MODULE = f"usr/lib/modules/{VERSION}/kernel/drivers/block/virtio_blk.ko"


def cpio(tree: Path, names: list[str]) -> bytes:
    """A newc archive of ``names`` (relative to ``tree``), as mkinitramfs and dracut write them."""
    proc = subprocess.run(["cpio", "--quiet", "-o", "-H", "newc"], cwd=tree, input="\n".join(names).encode(),
                          capture_output=True, check=True)
    return proc.stdout


def tree_with(root: Path, files: dict[str, bytes]) -> list[str]:
    names = []
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in reversed(list(Path(name).parents)[:-1]):
            if str(parent) not in names:
                names.append(str(parent))
        path.write_bytes(data)
        names.append(name)
    return names


@pytest.fixture
def main_archive(tmp_path: Path) -> bytes:
    tree = tmp_path / "main"
    names = tree_with(tree, {MODULE: b"\x7fELF module", "etc/fstab": b"", "conf/initramfs.conf": b"MODULES=most\n",
                             "init": b"#!/bin/sh\n" + b"x" * 5001})
    return cpio(tree, names)


COMPRESSORS = [None, ["gzip", "-c"], ["xz", "-c", "--check=crc32"], ["xz", "-c", "--format=lzma"], ["bzip2", "-c"],
               ["zstd", "-q", "-c"], ["lz4", "-l", "-q", "-c"]]


@pytest.mark.parametrize("compressor", COMPRESSORS)
def test_lists_files_and_keeps_wanted_contents(tmp_path: Path, main_archive: bytes,
                                               compressor: list[str] | None) -> None:
    data = main_archive if compressor is None else subprocess.run(compressor, input=main_archive,
                                                                  capture_output=True, check=True).stdout
    image_path = tmp_path / "initrd"
    image_path.write_bytes(data)
    image = read_initramfs(str(image_path), want={"/conf/initramfs.conf", "etc/fstab", MODULE + ".missing"})
    assert MODULE in image.files and "init" in image.files and "usr/lib/modules" in image.files
    assert image.contents == {"conf/initramfs.conf": b"MODULES=most\n", "etc/fstab": b""}
    assert image.module_names() == {"virtio_blk"}
    assert image.has_module_file(VERSION, "kernel/drivers/block/virtio_blk.ko")
    assert not image.has_module_file(VERSION, "kernel/drivers/scsi/virtio_scsi.ko")


def test_early_microcode_archive_then_compressed_main_and_later_entries_win(
        tmp_path: Path, main_archive: bytes) -> None:
    early = tmp_path / "early"
    early_archive = cpio(early, tree_with(early, {
        "kernel/x86/microcode/GenuineIntel.bin": b"ucode", "etc/fstab": b"from the early archive\n"}))
    padding = b"\0" * ((-len(early_archive)) % 512)
    image_path = tmp_path / "initrd"
    image_path.write_bytes(early_archive + padding + subprocess.run(["zstd", "-q", "-c"], input=main_archive,
                                                                    capture_output=True, check=True).stdout)
    image = read_initramfs(str(image_path), want={"etc/fstab"})
    assert "kernel/x86/microcode/GenuineIntel.bin" in image.files and MODULE in image.files
    assert image.compression == ["none", "zstd"]
    assert image.contents["etc/fstab"] == b""  # the main archive's copy replaces the early one


@pytest.mark.parametrize(("mangle", "message"), [
    (lambda data: data[:len(data) // 2], "ends inside"),
    (lambda data: b"not an initramfs at all", "unknown initramfs format"),
    (lambda data: data.replace(b"TRAILER!!!", b"TRAILER!!?"), "no newc cpio header"),
])
def test_broken_archives_are_unreadable(tmp_path: Path, main_archive: bytes, mangle, message: str) -> None:
    image_path = tmp_path / "initrd"
    image_path.write_bytes(mangle(main_archive))
    with pytest.raises(InitramfsUnreadable, match=message):
        read_initramfs(str(image_path))


def test_truncated_compressed_archive_is_unreadable(tmp_path: Path, main_archive: bytes) -> None:
    for compressor in (["gzip", "-c"], ["zstd", "-q", "-c"]):
        data = subprocess.run(compressor, input=main_archive, capture_output=True, check=True).stdout
        image_path = tmp_path / "initrd"
        image_path.write_bytes(data[:len(data) // 2])
        with pytest.raises(InitramfsUnreadable):
            read_initramfs(str(image_path))


def test_missing_host_decompressor_says_what_to_install(tmp_path: Path, main_archive: bytes,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    image_path = tmp_path / "initrd"
    image_path.write_bytes(subprocess.run(["zstd", "-q", "-c"], input=main_archive, capture_output=True,
                                          check=True).stdout)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(InitramfsUnreadable, match="no zstd") as info:
        read_initramfs(str(image_path))
    assert "Install zstd on the conversion host" in str(info.value)
    assert os.environ["PATH"] == str(tmp_path / "empty")


def test_module_names_and_initramfs_paths() -> None:
    assert _module_name("kernel/drivers/virtio/virtio_pci-modern.ko.zst ") == "virtio_pci_modern"
    assert _initramfs_names("/lib/modules/x/modules.dep") == ["lib/modules/x/modules.dep",
                                                              "usr/lib/modules/x/modules.dep"]
    assert _initramfs_names("/usr/sbin/lvm") == ["usr/sbin/lvm", "sbin/lvm"]
    assert _initramfs_names("/etc/fstab") == ["etc/fstab"]
