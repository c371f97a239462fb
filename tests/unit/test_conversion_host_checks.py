"""The conversion host's checks of a kernel and of the work directory's space, on real directories."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.conversion_host import (
    GiB,
    _install_hint,
    _kernel_check,
    _space_check,
    readable_kernels,
)

pytestmark = pytest.mark.unit


def test_a_boot_directory_without_a_kernel_says_which_package_brings_one(tmp_path: Path) -> None:
    (tmp_path / "config-6.1.0-13-amd64").write_text("")
    readable, unreadable = readable_kernels(str(tmp_path))
    assert (readable, unreadable) == ([], [])
    check = _kernel_check(readable, unreadable)
    assert not check.ok and check.detail == "no /boot/vmlinuz-* found"
    assert check.hint == "install linux-image-amd64 (Debian) or kernel-core (RHEL family)"


def test_kernels_are_listed_in_order_and_an_unreadable_one_is_named(tmp_path: Path) -> None:
    for version in ("6.1.0-13-amd64", "5.10.0-26-amd64"):
        (tmp_path / f"vmlinuz-{version}").write_bytes(b"kernel")
    readable, unreadable = readable_kernels(str(tmp_path))
    assert readable == [str(tmp_path / "vmlinuz-5.10.0-26-amd64"), str(tmp_path / "vmlinuz-6.1.0-13-amd64")]
    assert _kernel_check(readable, unreadable).ok
    # root reads any file, so the unreadable case is given as readable_kernels would report it
    check = _kernel_check([], [str(tmp_path / "vmlinuz-6.1.0-13-amd64")])
    assert not check.ok and check.detail.startswith("not readable: ") and "chmod 0644" in (check.hint or "")


def test_space_of_a_work_dir_not_made_yet_is_its_nearest_existing_parent(tmp_path: Path) -> None:
    check, free = _space_check(str(tmp_path / "not" / "made" / "yet"), 1)
    assert check.ok and free == shutil.disk_usage(tmp_path).free
    assert not (tmp_path / "not").exists()
    too_much = free + 1024 * GiB
    check, _free = _space_check(str(tmp_path), too_much)
    assert not check.ok and check.hint == "free space there or set another work_dir"
    assert f"at least {too_much / GiB:.1f} GiB wanted" in check.detail


def test_install_hint_names_each_family_only_where_the_package_names_differ() -> None:
    assert _install_hint("libnbd-bin", "libnbd") == "install libnbd-bin (Debian/Ubuntu) or libnbd (RHEL family)"
    assert _install_hint("nbdkit", "nbdkit") == (
        "install nbdkit (the same package name on Debian/Ubuntu and the RHEL family)")
