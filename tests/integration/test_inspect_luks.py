"""Encrypted volumes: listed without a key, a blocker saying so, opened with the right key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.appliance import Appliance, DriveSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inspect import (
    InspectOptions,
    list_filesystems,
    open_luks,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.pipeline import run_inspect
from tests.hashing import sha256

pytestmark = pytest.mark.integration

KEY = "correct horse battery staple"


@pytest.fixture(scope="module")
def luks_disk(tmp_path_factory) -> Path:
    """A disk with one LUKS partition holding ext4, plus a plain swap partition and a bare LVM PV."""
    path = tmp_path_factory.mktemp("luks") / "luks.raw"
    with open(path, "wb") as handle:
        handle.truncate(128 << 20)
    with Appliance([DriveSpec(path=str(path), format="raw", readonly=False)]) as g:
        g.part_init("/dev/sda", "mbr")
        g.part_add("/dev/sda", "p", 2048, 118783)
        g.part_add("/dev/sda", "p", 118784, 184319)
        g.luks_format("/dev/sda1", KEY, 0)
        g.cryptsetup_open("/dev/sda1", KEY, "setup")
        g.mkfs("ext4", "/dev/mapper/setup")
        g.cryptsetup_close("/dev/mapper/setup")
        g.mkswap("/dev/sda2")
    return path


def test_listing_sees_luks_then_what_it_holds(luks_disk: Path) -> None:
    with Appliance([DriveSpec(path=str(luks_disk), format="raw", readonly=True)]) as g:
        before = list_filesystems(g)
        assert before == {"/dev/sda1": "crypto_LUKS", "/dev/sda2": "swap"}
        opened, findings = open_luks(g, ["wrong key", KEY], before)
        assert opened == ["/dev/sda1"] and findings == []
        after = list_filesystems(g)
        assert after["/dev/mapper/luks0"] == "ext4"
        assert after["/dev/sda1"] == "crypto_LUKS"


def test_no_key_is_a_blocker_and_the_key_is_never_shown(luks_disk: Path, tmp_path: Path) -> None:
    before = sha256(luks_disk)
    result = run_inspect(SourceSpec(input="disk", path=[str(luks_disk)], format="raw", work_dir=str(tmp_path)),
                         InspectOptions(luks_keys=["not it"]))
    codes = {f.code: f for f in result.findings}
    assert codes["encrypted-no-key"].severity.value == "blocker"
    assert codes["encrypted-no-key"].subject == "/dev/sda1"
    assert "luks_keys" in codes["encrypted-no-key"].message
    assert "not it" not in str(result.to_dict())

    unlocked = run_inspect(SourceSpec(input="disk", path=[str(luks_disk)], format="raw", work_dir=str(tmp_path)),
                           InspectOptions(luks_keys=[KEY]))
    unlocked_codes = {f.code for f in unlocked.findings}
    assert "encrypted-no-key" not in unlocked_codes
    assert "no-os" in unlocked_codes  # an empty ext4 inside: decrypted, and honestly no OS
    assert KEY not in str(unlocked.to_dict())
    assert sha256(luks_disk) == before
    assert list(tmp_path.iterdir()) == []
