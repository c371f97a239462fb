"""Block device name mapping and rewriting, on text."""

from __future__ import annotations

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.convert.linux import devices

pytestmark = pytest.mark.unit


def test_drive_letters_follow_the_kernel() -> None:
    assert [devices.drive_letters(i) for i in (0, 1, 25, 26, 27, 701)] == ["a", "b", "z", "aa", "ab", "zz"]


def test_source_names_by_bus() -> None:
    assert devices.source_disk_names(["ide", "ide", "scsi", "sata", "nvme", "nvme", "xen", None]) == [
        "hda", "hdb", "sda", "sdb", "nvme0n1", "nvme1n1", "xvda", "sdc"]


def test_name_map_for_each_block_driver() -> None:
    assert devices.build_name_map(["ide", "scsi"], "virtio-blk") == {"hda": "vda", "sda": "vdb"}
    assert devices.build_name_map(["ide", "scsi"], "virtio-scsi") == {"hda": "sda", "sda": "sdb"}


FSTAB = """# /etc/fstab
/dev/sda1  /      ext4 errors=remount-ro 0 1
/dev/sda2  none   swap sw 0 0
/dev/sdb1  /srv   xfs  defaults 0 2
UUID=0a1b2c3d-sdaa /data ext4 defaults 0 2
/dev/sr0   /media/cdrom udf,iso9660 user,noauto 0 0
"""


def test_fstab_rewritten_for_virtio_blk() -> None:
    name_map = devices.build_name_map(["sata", "sata"], "virtio-blk")
    text, count = devices.rewrite_device_names(FSTAB, name_map, "virtio-blk")
    assert count == 3
    assert "/dev/vda1  /      ext4" in text and "/dev/vda2  none" in text and "/dev/vdb1  /srv" in text
    assert "UUID=0a1b2c3d-sdaa" in text and "/dev/sr0" in text


def test_kernel_command_line_and_resume() -> None:
    line = "linux /boot/vmlinuz-6.1.0 root=/dev/sda1 ro console=tty0 resume=/dev/sda5 quiet"
    text, count = devices.rewrite_device_names(line, devices.build_name_map(["scsi"], "virtio-blk"), "virtio-blk")
    assert (text, count) == ("linux /boot/vmlinuz-6.1.0 root=/dev/vda1 ro console=tty0 resume=/dev/vda5 quiet", 2)


def test_xen_nvme_and_cciss_names() -> None:
    name_map = devices.build_name_map(["xen", "xen"], "virtio-blk")
    assert devices.rewrite_device_names("/dev/xvda1 /dev/xvdb", name_map, "virtio-blk")[0] == "/dev/vda1 /dev/vdb"
    name_map = devices.build_name_map(["nvme", "nvme"], "virtio-blk")
    assert devices.rewrite_device_names("root=/dev/nvme0n1p2 /dev/nvme1n1", name_map, "virtio-blk")[0] == \
        "root=/dev/vda2 /dev/vdb"
    assert devices.rewrite_device_names("/dev/cciss/c0d1p3", {}, "virtio-blk")[0] == "/dev/vdb3"


def test_names_not_in_the_map_keep_their_position() -> None:
    assert devices.rewrite_device_names("/dev/sdc1 /dev/hdb", {}, "virtio-blk")[0] == "/dev/vdc1 /dev/vdb"
    assert devices.rewrite_device_names("/dev/hda2", {}, "virtio-scsi")[0] == "/dev/sda2"


def test_no_partial_matches() -> None:
    text = "/dev/sda1x /dev/sdaz9 /dev/sdfoo /dev/disk/by-id/ata-X /dev/mapper/vg-root"
    new, _count = devices.rewrite_device_names(text, {"sda": "vda"}, "virtio-blk")
    assert "/dev/sda1x" in new and "/dev/disk/by-id/ata-X" in new and "/dev/mapper/vg-root" in new


def test_idempotent() -> None:
    name_map = devices.build_name_map(["sata"], "virtio-blk")
    once, _count = devices.rewrite_device_names(FSTAB, name_map, "virtio-blk")
    twice, count = devices.rewrite_device_names(once, name_map, "virtio-blk")
    assert twice == once and count == 0


def test_consoles() -> None:
    assert devices.rewrite_consoles("co:2345:respawn:/sbin/agetty xvc0 9600\nconsole=hvc0 x") == (
        "co:2345:respawn:/sbin/agetty ttyS0 9600\nconsole=ttyS0 x", 2)
