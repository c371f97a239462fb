"""The phony guests inspect as what they claim to be, and the guest cache is safe.

Each phony guest is opened read-only in the engine's own ``Appliance`` and
inspected by libguestfs; the blank disk must show no operating system.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.appliance import Appliance
from tests.guests import cache, phony
from tests.guests.phony import PhonyGuest

pytestmark = pytest.mark.integration


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inspect(guest: PhonyGuest) -> dict[str, Any]:
    with cache.qemu_slot(f"inspecting {guest.name}"), Appliance(guest.drives(readonly=True)) as g:
        roots = g.inspect_os()
        if not roots:
            return {"roots": roots}
        root = roots[0]
        facts = {"roots": roots}
        for item in ("type", "distro", "major_version", "minor_version", "product_name", "hostname", "arch",
                     "package_format", "package_management", "osinfo", "mountpoints"):
            facts[item] = getattr(g, f"inspect_get_{item}")(root)
        mounts = sorted(facts["mountpoints"].items(), key=lambda item: len(item[0]))
        for mountpoint, device in mounts:
            g.mount_ro(device, mountpoint)
        facts["applications"] = {a["app2_name"] for a in g.inspect_list_applications2(root)}
        facts["network_config_exists"] = g.is_file(guest.details["network_config"])
        g.umount_all()
        return facts


@pytest.mark.parametrize("name", [n for n in phony.PHONY_NAMES if n != "blank"])
def test_phony_guest_inspects_as_expected(phony_guests: dict[str, PhonyGuest], name: str) -> None:
    guest = phony_guests[name]
    expected = guest.expected
    assert expected is not None
    before = _sha256(guest.disk)
    facts = _inspect(guest)
    assert facts["roots"] == [expected.root]
    assert facts["type"] == expected.type
    assert facts["distro"] == expected.distro
    assert (facts["major_version"], facts["minor_version"]) == (expected.major, expected.minor)
    assert facts["product_name"] == expected.product_name
    assert facts["hostname"] == expected.hostname
    assert facts["arch"] == expected.arch
    assert facts["package_format"] == expected.package_format
    assert facts["package_management"] == expected.package_management
    assert facts["osinfo"] == expected.osinfo
    assert facts["mountpoints"] == expected.mountpoints
    assert guest.details["vmware_tools"] in facts["applications"]
    assert set(guest.details["packages"]) <= facts["applications"]
    assert facts["network_config_exists"]
    assert _sha256(guest.disk) == before, "a read-only inspection changed the image"


def test_blank_disk_has_no_operating_system(blank_disk: PhonyGuest) -> None:
    assert blank_disk.expected is None
    with cache.qemu_slot("inspecting blank"), Appliance(blank_disk.drives()) as g:
        assert g.inspect_os() == []
        assert g.list_partitions() == []


def test_phony_guest_formats_are_what_they_say(phony_guests: dict[str, PhonyGuest]) -> None:
    import json  # pylint: disable=import-outside-toplevel

    from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.process import run_tool

    formats = set()
    for guest in phony_guests.values():
        info = json.loads(run_tool(["qemu-img", "info", "--output=json", str(guest.disk)]))
        assert info["format"] == guest.format, guest.name
        formats.add(guest.format)
    assert formats == {"raw", "qcow2"}


def test_cached_guest_is_reused_without_rebuilding(phony_guests: dict[str, PhonyGuest]) -> None:
    start = time.monotonic()
    again = phony.build("phony-debian12")
    assert time.monotonic() - start < 1.0
    assert again.directory == phony_guests["phony-debian12"].directory
    assert again.directory.name == phony.recipe("phony-debian12").dirname


# --- the cache itself, on a private cache root -----------------------------------------

@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    return tmp_path


def test_cache_key_follows_parameters_and_builder_source() -> None:
    base = cache.Recipe(name="x", params={"size": 1}, modules=("phony.py",))
    assert base.key == cache.Recipe(name="x", params={"size": 1}, modules=("phony.py",)).key
    assert base.key != cache.Recipe(name="x", params={"size": 2}, modules=("phony.py",)).key
    assert base.key != cache.Recipe(name="x", params={"size": 1}, modules=("phony.py", "rpmdb.py")).key
    assert len(base.key) == 64


def test_interrupted_build_leaves_nothing_that_looks_finished(private_cache: Path) -> None:
    recipe = cache.Recipe(name="broken", params={}, modules=())

    def build(tmp: Path) -> dict[str, Any]:
        (tmp / "disk.raw").write_bytes(b"half")
        raise RuntimeError("killed mid-build")

    with pytest.raises(RuntimeError, match="killed mid-build"):
        cache.ensure_built(recipe, build)
    assert not recipe.is_built()
    leftovers = [p for p in private_cache.iterdir() if p.is_dir()]
    assert leftovers == []


def test_stale_build_directory_is_cleaned_and_rebuilt(private_cache: Path) -> None:
    recipe = cache.Recipe(name="stale", params={}, modules=())
    stale = private_cache / f".{recipe.dirname}.build-leftover"
    stale.mkdir()
    (stale / "disk.raw").write_bytes(b"partial")
    directory, manifest = cache.ensure_built(recipe, lambda tmp: {"ok": (tmp / "f").write_text("x") == 1})
    assert not stale.exists()
    assert manifest["facts"] == {"ok": True}
    assert manifest["key"] == recipe.key
    assert (directory / "f").read_text() == "x"


def test_two_concurrent_builds_of_one_key_build_once(private_cache: Path) -> None:
    recipe = cache.Recipe(name="once", params={}, modules=())
    calls: list[int] = []
    results: list[Path] = []

    def build(tmp: Path) -> dict[str, Any]:
        calls.append(1)
        time.sleep(0.5)
        (tmp / "disk.raw").write_bytes(b"done")
        return {}

    def worker() -> None:
        results.append(cache.ensure_built(recipe, build)[0])

    threads = [threading.Thread(target=worker) for _worker in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(set(results)) == 1
    assert (results[0] / "disk.raw").read_bytes() == b"done"
