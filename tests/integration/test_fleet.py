"""The migrate role on a small fleet: four guests, two at a time, one conversion host, a real libvirtd.

Guests: the real VMware-style Debian 12 guest (its OVA), the convertible phony
Rocky 9 and SLES 15 guests (phony guests with a kernel file and tool stand-ins:
the plain phony guests have no kernel and are blocked by preflight, so they
cannot show a successful conversion), and a blank disk, which preflight blocks
(no operating system). Run through playbooks/migrate_ova.yml exactly as a user
or AWX runs it, into a directory pool of a private libvirtd. None of them is
booted here (that is tests/e2e/).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.guests import convertible
from tests.hashing import tree_hashes
from tests.libvirtd import PrivateLibvirtd, define_dir_pool, remove_pool

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# vmware-deb12 is found by the playbook from its OVA file name; the others are given as a list
CONVERTED = ("vmware-deb12", "fleet-rocky9", "fleet-sles15")
FLEET = (*CONVERTED, "fleet-blank")


def run_playbook(playbook: str, inventory: Path, extra: dict[str, Any], tmp_path: Path, tag: str,
                 *args: str) -> tuple[int, str, float]:
    extra_file = tmp_path / f"extra-{tag}.json"
    extra_file.write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), KVMIGRATE_ACCEL="tcg")
    start = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
                           str(REPO / "playbooks" / playbook), "-e", f"@{extra_file}", *args],
                          capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=1800)
    output = proc.stdout + proc.stderr
    (tmp_path / f"{tag}.log").write_text(output)
    return proc.returncode, output, time.monotonic() - start


def recap(output: str) -> dict[str, int]:
    match = re.search(r"^localhost\s*:\s*(.*)$", output.rsplit("PLAY RECAP", maxsplit=1)[-1], re.MULTILINE)
    assert match, output[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def running(work: Path, name: str) -> tuple[float, float]:
    """When the guest's conversion held its slot: from its "open" phase (after "queued") to its last update."""
    data = json.loads((work / f"kvmigrate-{name}" / "status.json").read_text())
    opened = [p["started"] for p in data["phases"] if p["name"] == "open"]
    assert [p["name"] for p in data["phases"]][:2] == ["queued", "open"], data
    return opened[0], data["updated"]


@pytest.fixture
def fleet_pool(libvirtd: PrivateLibvirtd, tmp_path: Path):
    define_dir_pool(libvirtd, "kvt-fleet", tmp_path / "pool")
    try:
        yield "kvt-fleet"
    finally:
        for name in set(libvirtd.domains()) & set(FLEET):
            libvirtd.virsh("destroy", name, check=False)
            libvirtd.virsh("undefine", name, check=False)
        for volume in libvirtd.volumes("kvt-fleet"):
            libvirtd.virsh("vol-delete", "--pool", "kvt-fleet", volume, check=False)
        remove_pool(libvirtd, "kvt-fleet")


def test_four_guests_two_at_a_time(vmware_guest, blank_disk, libvirtd: PrivateLibvirtd, fleet_pool: str,
                                   tmp_path: Path) -> None:
    rocky = convertible.build("phony-rocky9")
    sles = convertible.build("phony-sles15")
    sources = tree_hashes(vmware_guest.ova, *rocky.disks, *sles.disks, *blank_disk.disks)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"conversion_hosts": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    work, report_dir = tmp_path / "work", tmp_path / "report"

    def disk_guest(name: str, guest: Any) -> dict[str, Any]:
        return {"name": name, "source": {"input": "disk", "path": [str(d) for d in guest.disks],
                                         "format": guest.format}}

    extra = {
        "kvmigrate_prepare_conversion_hosts": False,
        # The OVA comes through the playbook's own discovery, after the listed guests; the role starts
        # the largest source first (the OVA), then the others in the other slot, largest first (see below).
        "kvmigrate_ova_files": [str(vmware_guest.ova)],
        "migrate_guests": [disk_guest("fleet-rocky9", rocky), disk_guest("fleet-sles15", sles),
                           disk_guest("fleet-blank", blank_disk)],
        "migrate_parallel": 2, "migrate_uri": libvirtd.uri, "migrate_pool": fleet_pool,
        "migrate_work_dir": str(work), "migrate_report_dir": str(report_dir), "migrate_poll_interval": 5,
    }
    assert vmware_guest.ova.name == "vmware-deb12.ova"
    rc, output, first_seconds = run_playbook("migrate_ova.yml", inventory, extra, tmp_path, "first")

    # The play fails at its very end, after the report, naming the broken guest and why.
    assert rc == 2, output[-4000:]
    assert re.search(r"1 of 4 guests were not migrated: fleet-blank \(blocked in preflight: conversion blocked: "
                     r"no-os", output), output[-4000:]
    report = json.loads((report_dir / "fleet-report.json").read_text())
    guests = {g["name"]: g for g in report["guests"]}
    assert sorted(guests) == sorted(FLEET)
    assert report["summary"] == {"converted": 3, "blocked": 1}
    blank = guests["fleet-blank"]
    assert blank["status"] == "blocked" and blank["failed_phase"] == "preflight"
    assert "no-os" in blank["reason"] and blank["bytes_copied"] == 0
    for name in CONVERTED:
        g = guests[name]
        assert g["status"] == "converted" and g["reason"] is None, g
        assert g["conversion_host"] == "localhost" and g["domain"]["name"] == name
        assert [p["name"] for p in g["phases"]] == ["open", "queued", "inspect", "preflight", "convert", "trim",
                                                    "copy", "output"]
        assert g["seconds"] > 0 and g["bytes_copied"] > 0, g
        assert g["conversion"], g
    # warnings of each guest reach the report (the phony guests have no guest agent to install)
    assert any("qemu-guest-agent" in w for w in guests["fleet-rocky9"]["warnings"]), guests["fleet-rocky9"]["warnings"]
    # a disk input's NIC takes the MAC the guest's own configuration names
    assert any(s.startswith("gave NIC 0 the MAC") for s in guests["fleet-rocky9"]["conversion"]), guests["fleet-rocky9"]
    assert guests["vmware-deb12"]["bytes_copied"] > 100 << 20
    assert guests["vmware-deb12"]["source"] == {"input": "ova", "path": str(vmware_guest.ova), "uri": None,
                                                "domain": None}

    # libvirt agrees: three domains, each on its own volumes; nothing for the blank disk
    assert set(libvirtd.domains()) & set(FLEET) == set(CONVERTED)
    volumes = libvirtd.volumes(fleet_pool)
    for name in CONVERTED:
        assert any(v.startswith(f"{name}-") for v in volumes), volumes
    assert not any(v.startswith("fleet-blank") for v in volumes)

    # a sliding window of two: never more than two conversions hold a slot at once; the long guest
    # runs from the start while the others follow each other in the other slot, each starting as
    # soon as the one before it ended (not when the long one ends)
    spans = {name: running(work, name) for name in FLEET}
    edges = sorted([(span[0], 1) for span in spans.values()] + [(span[1], -1) for span in spans.values()],
                   key=lambda e: (e[0], e[1]))
    assert max(itertools.accumulate(edge[1] for edge in edges)) == 2, spans
    deb12 = spans["vmware-deb12"]
    others = sorted((spans[n] for n in FLEET if n != "vmware-deb12"), key=lambda iv: iv[0])
    assert all(deb12[0] < iv[0] for iv in others) and others[1][0] < deb12[1], spans
    for before, after in itertools.pairwise(others):
        assert 0 <= after[0] - before[1] < 15, spans
    # the order: by allocated size of the sources (which of the two phony guests is larger depends on the build)
    allocated = {name: sum(os.stat(d).st_blocks for d in guest.disks)
                 for name, guest in (("fleet-rocky9", rocky), ("fleet-sles15", sles), ("fleet-blank", blank_disk))}
    order = sorted(allocated, key=lambda name: -allocated[name])
    assert [n for n in sorted(spans, key=lambda n: spans[n][0]) if n != "vmware-deb12"] == order, (allocated, spans)
    queued = {n: sum(p["seconds"] for p in guests[n]["phases"] if p["name"] == "queued") for n in FLEET}
    assert queued["vmware-deb12"] < 5 and queued[order[0]] < 5, queued
    assert all(queued[n] > 5 for n in order[1:]), queued
    assert re.search(rf"{order[1]}: running, phase queued", output), output[-3000:]

    # the human-readable table and the HTML page say the same
    table = (report_dir / "fleet-report.txt").read_text()
    assert "4 guests on 1 conversion host(s): 1 blocked, 3 converted" in table
    for name in CONVERTED:
        assert re.search(rf"^{name}\s+localhost\s+converted\s", table, re.MULTILINE), table
    assert re.search(r"^fleet-blank\s+localhost\s+blocked\s", table, re.MULTILINE), table
    assert "blocked in preflight: conversion blocked: no-os" in table
    page = (report_dir / "fleet-report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page.split("<body>")[1]
    assert page.count('<tr class="converted">') == 3 and page.count('<tr class="blocked">') == 1
    assert "no-os" in page

    # progress was shown while the conversions ran
    assert re.search(r"vmware-deb12: running, phase (inspect|convert|copy)", output), output[-3000:]
    # a guest is collected, defined and recorded as soon as its conversion ends, not after the window:
    # the short guests are finished while the long one still converts
    for name in ("fleet-sles15", "fleet-rocky9"):
        collected = output.index(f"Collect the conversion of {name}")
        assert collected < output.rindex("vmware-deb12: running"), output[-6000:]

    # the second run converts nothing, changes nothing, and still reports the broken guest
    uuids = {n: libvirtd.virsh("domuuid", n).stdout.strip() for n in CONVERTED}
    rc2, output2, second_seconds = run_playbook("migrate_ova.yml", inventory, extra, tmp_path, "second")
    assert rc2 == 2 and "1 of 4 guests were not migrated: fleet-blank" in output2, output2[-4000:]
    assert recap(output2)["changed"] == 0, output2[-6000:]
    again = json.loads((report_dir / "fleet-report.json").read_text())
    assert again["summary"] == {"up-to-date": 3, "blocked": 1}
    assert {n: libvirtd.virsh("domuuid", n).stdout.strip() for n in CONVERTED} == uuids
    assert sorted(libvirtd.volumes(fleet_pool)) == sorted(volumes)
    assert tree_hashes(vmware_guest.ova, *rocky.disks, *sles.disks, *blank_disk.disks) == sources
    print(f"fleet: first run {first_seconds:.0f} s, second run {second_seconds:.0f} s")


def test_rollback_removes_only_the_failed_guest(libvirtd: PrivateLibvirtd, fleet_pool: str, isolated_bridge: str,
                                                tmp_path: Path) -> None:
    """A guest whose verification fails after its conversion is rolled back (domain and volumes); its
    neighbour converts untouched; with migrate_fail_on_guest_failure off the play ends green."""
    rocky = convertible.build("phony-rocky9")
    sles = convertible.build("phony-sles15")
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"conversion_hosts": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    report_dir = tmp_path / "report"
    extra = {
        "kvmigrate_prepare_conversion_hosts": False, "migrate_fail_on_guest_failure": False,
        "migrate_guests": [
            # nothing listens on port 9 of loopback: the verification fails after a real start
            {"name": "fleet-rocky9", "source": {"input": "disk", "path": [str(d) for d in rocky.disks],
                                                "format": rocky.format},
             "start": True, "verify_port": {"host": "127.0.0.1", "port": 9}, "verify_timeout": 3,
             "rollback": True},
            {"name": "fleet-sles15", "source": {"input": "disk", "path": [str(d) for d in sles.disks],
                                                "format": sles.format}, "rollback": True}],
        "migrate_uri": libvirtd.uri, "migrate_pool": fleet_pool, "migrate_work_dir": str(tmp_path / "work"),
        "migrate_report_dir": str(report_dir), "migrate_poll_interval": 5,
        # a disk input's NIC is on the network "default": here a bridge with no uplink
        "migrate_bridges": {"default": isolated_bridge},
    }
    rc, output, _seconds = run_playbook("migrate_ova.yml", inventory, extra, tmp_path, "rollback")
    assert rc == 0, output[-4000:]
    guests = {g["name"]: g for g in json.loads((report_dir / "fleet-report.json").read_text())["guests"]}
    rolled = guests["fleet-rocky9"]
    assert rolled["status"] == "failed" and rolled["failed_phase"] == "verify", rolled
    assert "127.0.0.1:9" in rolled["reason"] or "Timeout" in rolled["reason"], rolled["reason"]
    assert any(a.startswith("undefine") for a in rolled["rolled_back"]), rolled["rolled_back"]
    assert any(a.startswith("delete volume") for a in rolled["rolled_back"]), rolled["rolled_back"]
    assert "fleet-rocky9" not in libvirtd.domains()
    assert not any(v.startswith("fleet-rocky9") for v in libvirtd.volumes(fleet_pool))
    assert guests["fleet-sles15"]["status"] == "converted" and guests["fleet-sles15"]["rolled_back"] == []
    assert "fleet-sles15" in libvirtd.domains()
    assert libvirtd.virsh("domstate", "fleet-sles15").stdout.strip() == "shut off"
    assert "rolled back: destroy, undefine, delete volume" in (report_dir / "fleet-report.txt").read_text()


def test_source_secrets_stay_out_of_output_reports_and_status(blank_disk, libvirtd: PrivateLibvirtd,
                                                              fleet_pool: str, tmp_path: Path) -> None:
    """source.password / private_key / luks_keys reach convert_guest only: not the play's output (even
    verbose), not the reports, not the status files."""
    secrets = {"password": "pw-Secret-4711", "luks_keys": ["luks-Secret-0815"],
               "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nkey-Secret-2342\n"}
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"conversion_hosts": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    report_dir, work = tmp_path / "report", tmp_path / "work"
    extra = {
        "kvmigrate_prepare_conversion_hosts": False, "migrate_fail_on_guest_failure": False,
        "migrate_guests": [{"name": "fleet-secret", "source": {
            "input": "disk", "path": [str(d) for d in blank_disk.disks], "format": blank_disk.format, **secrets}}],
        "migrate_uri": libvirtd.uri, "migrate_pool": fleet_pool, "migrate_work_dir": str(work),
        "migrate_report_dir": str(report_dir), "migrate_poll_interval": 2,
    }
    rc, output, _seconds = run_playbook("migrate_ova.yml", inventory, extra, tmp_path, "secrets", "-vvv")
    assert rc == 0, output[-4000:]
    guest = json.loads((report_dir / "fleet-report.json").read_text())["guests"][0]
    assert guest["status"] == "blocked" and "no-os" in json.dumps(guest), guest
    texts = {"output": output}
    texts.update({str(f): f.read_text(errors="replace") for d in (report_dir, work) for f in d.rglob("*")
                  if f.is_file()})
    for marker in ("pw-Secret-4711", "luks-Secret-0815", "key-Secret-2342"):
        assert [name for name, text in texts.items() if marker in text] == [], marker
