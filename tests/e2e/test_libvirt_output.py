"""output: libvirt end to end: the VMware guest converted into each pool type of a real libvirtd,
started as a domain, its marker read from the domain's serial log, shut down, and removed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.guests.boot import parse_marker
from tests.hashing import tree_hashes
from tests.libvirtd import attach_loop, define_disk_pool, remove_pool
from tests.playbook import run_tasks

pytestmark = pytest.mark.e2e

MARKER = "KVMIGRATE-MARKER"


def wait_for_marker(log: Path, timeout: float = 400) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists():
            for line in log.read_text(errors="replace").splitlines():
                if MARKER in line:
                    return line
        time.sleep(2)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no serial log)"
    raise AssertionError(f"no marker in {log} within {timeout} s:\n{tail}")


@pytest.fixture
def big_disk_pool(libvirtd, tmp_path: Path):
    """A disk pool on a loop device large enough for the guest (sparse backing file)."""
    loop = attach_loop(tmp_path / "disk-pool.img", 4 << 30)
    try:
        define_disk_pool(libvirtd, "kvt-e2e-disk", loop)
        yield "kvt-e2e-disk"
    finally:
        remove_pool(libvirtd, "kvt-e2e-disk")
        loop.detach()


@pytest.mark.parametrize("pool_kind", ["dir", "disk"])
def test_convert_into_pool_boot_shutdown_remove(pool_kind: str, vmware_guest, libvirtd, dir_pool, isolated_bridge,
                                                request, tmp_path: Path) -> None:
    pool = dir_pool.name if pool_kind == "dir" else request.getfixturevalue("big_disk_pool")
    name = f"deb12-{pool_kind}"
    sources = tree_hashes(vmware_guest.ova)
    convert = {"kvmigrate.v2v.convert_guest": {
        "input": "ova", "path": str(vmware_guest.ova), "output": "libvirt", "output_uri": libvirtd.uri, "pool": pool,
        "name": name, "start": True, "work_dir": str(tmp_path / "work"),
        "bridges": {"VM Network": isolated_bridge}}}
    run = run_tasks([{"name": "convert", **convert, "register": "conv"}], tmp_path)
    conv = run.results["conv"]
    assert run.rc == 0 and not conv.get("failed"), conv.get("msg", run.output)
    assert conv["changed"] and conv["target"]["pool"] == pool
    assert name in libvirtd.domains()
    assert libvirtd.virsh("domstate", name).stdout.strip() == "running"
    line = wait_for_marker(libvirtd.base / "log" / "qemu" / f"{name}-serial.log")
    marker = parse_marker(line)
    assert marker.hostname == vmware_guest.hostname and marker.root == "/dev/vda1"
    nic = marker.nic(vmware_guest.nic)
    assert nic is not None and vmware_guest.address in nic.addresses
    volumes = [v["name"] for v in conv["target"]["volumes"]]
    assert set(volumes) <= set(libvirtd.volumes(pool))

    again = run_tasks([{"name": "convert again", **convert, "register": "conv2"}], tmp_path)
    assert again.results["conv2"]["changed"] is False, again.output

    stopped = run_tasks([
        {"name": "shutdown", "kvmigrate.v2v.define_domain": {"uri": libvirtd.uri, "name": name,
                                                             "state": "shutdown", "wait_timeout": 240},
         "register": "down"}], tmp_path)
    down = stopped.results["down"]
    assert not down.get("failed"), down.get("msg")
    assert down["domain"]["state"] == "shutdown"
    assert libvirtd.virsh("domstate", name).stdout.strip() == "shut off"

    # start is not part of the conversion: without it nothing changes; with it the stopped domain
    # starts (check mode only says so), and neither converts again (no appliance: no inspect phase).
    unstarted = {"kvmigrate.v2v.convert_guest": {**convert["kvmigrate.v2v.convert_guest"], "start": False}}
    kept = run_tasks([{"name": "convert, no start", **unstarted, "register": "kept"},
                      {"name": "start (check)", **convert, "check_mode": True, "register": "would"}], tmp_path)
    assert kept.results["kept"]["changed"] is False, kept.output
    would = kept.results["would"]
    assert would["changed"] is True and would["target"]["actions"] == ["start"], would
    assert libvirtd.virsh("domstate", name).stdout.strip() == "shut off"
    started = run_tasks([{"name": "start", **convert, "register": "restarted"}], tmp_path).results["restarted"]
    assert started["changed"] is True and started["target"]["domain"]["state"] == "running", started
    assert "inspect" not in [p["name"] for p in started["phases"]]
    assert libvirtd.virsh("domstate", name).stdout.strip() == "running"

    removed = run_tasks([
        {"name": "remove", "kvmigrate.v2v.define_domain": {"uri": libvirtd.uri, "name": name, "state": "absent",
                                                           "remove_storage": True}, "register": "gone"}], tmp_path)
    gone = removed.results["gone"]
    assert not gone.get("failed"), gone.get("msg")
    assert name not in libvirtd.domains()
    assert not set(volumes) & set(libvirtd.volumes(pool))
    assert tree_hashes(vmware_guest.ova) == sources
