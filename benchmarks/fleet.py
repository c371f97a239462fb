"""The four-guest fleet of tests/integration/test_fleet.py, one at a time vs. two at a time.

Both runs go through playbooks/migrate_ova.yml into a directory pool of a
private libvirtd, with the same guests under different names (so each run
really converts). Printed: both wall times and their ratio (goal: at most 0.6
on two cores), each guest's phases, and the best ratio the fleet allows: two
at a time cannot end before its longest guest (from the sequential run) nor
before half the sequential time. Measured twice: with the VMware-template
Debian guest of the test (its initramfs is rebuilt: most of the fleet's work)
and with the Debian-default MODULES=most guest (its initramfs is kept). The
blank disk is blocked by preflight in every run, as in the test. Run with
``python -m benchmarks fleet``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import report
from tests.guests import convertible, phony, vmware_debian
from tests.libvirtd import define_dir_pool, remove_pool, start_libvirtd

REPO = Path(__file__).resolve().parent.parent


def fleet(suffix: str, layout: str = "plain") -> list[dict[str, Any]]:
    rocky, sles, blank = convertible.build("phony-rocky9"), convertible.build("phony-sles15"), phony.blank_disk()
    vmware = vmware_debian.build(layout)

    def disk(name: str, guest: Any) -> dict[str, Any]:
        return {"name": f"{name}-{suffix}", "source": {"input": "disk", "path": [str(d) for d in guest.disks],
                                                       "format": guest.format}}

    return [disk("rocky9", rocky), disk("sles15", sles), disk("blank", blank),
            {"name": f"deb12-{suffix}", "source": {"input": "ova", "path": str(vmware.ova)}}]


def run(tmp: Path, uri: str, pool: str, parallel: int, suffix: str, layout: str) -> tuple[float, dict[str, Any]]:
    inventory = tmp / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"conversion_hosts": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    report_dir = tmp / f"report-{suffix}"
    extra = tmp / f"extra-{suffix}.json"
    extra.write_text(json.dumps({
        "kvmigrate_prepare_conversion_hosts": False, "migrate_fail_on_guest_failure": False,
        "migrate_guests": fleet(suffix, layout), "migrate_parallel": parallel, "migrate_uri": uri, "migrate_pool": pool,
        "migrate_work_dir": str(tmp / "work"), "migrate_report_dir": str(report_dir), "migrate_poll_interval": 5}))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), KVMIGRATE_ACCEL="tcg")
    start = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
                           str(REPO / "playbooks" / "migrate_ova.yml"), "-e", f"@{extra}"],
                          capture_output=True, text=True, env=env, cwd=REPO, check=False)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the fleet play failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
    data = json.loads((report_dir / "fleet-report.json").read_text())
    return seconds, data


def per_guest(data: dict[str, Any]) -> dict[str, str]:
    """Each guest's conversion seconds and its phases, from the report (names without the run's suffix)."""
    return {guest["name"].rsplit("-", 1)[0]: f"{guest['seconds']} s (" + ", ".join(
        f"{phase['name']} {phase['seconds']}" for phase in guest["phases"]) + ")" for guest in data["guests"]}


def best_ratio(sequential: float, data: dict[str, Any]) -> float:
    """Two slots cannot finish before the longest guest does, nor before half of the sequential run."""
    longest = max(float(guest["seconds"] or 0) for guest in data["guests"])
    return max(longest, sequential / 2) / sequential


def measure(layout: str) -> dict[str, Any]:
    fleet("warm", layout)  # build (or find) the guests before timing anything
    daemon = start_libvirtd()
    try:
        with tempfile.TemporaryDirectory(prefix="kvmigrate-bench-fleet-", dir="/var/tmp") as tmp_name:
            tmp = Path(tmp_name)
            define_dir_pool(daemon, "bench-fleet", tmp / "pool")
            try:
                sequential, seq_data = run(tmp, daemon.uri, "bench-fleet", 1, "seq", layout)
                parallel, par_data = run(tmp, daemon.uri, "bench-fleet", 2, "par", layout)
            finally:
                for name in daemon.domains():
                    daemon.virsh("undefine", name, check=False)
                for volume in daemon.volumes("bench-fleet"):
                    daemon.virsh("vol-delete", "--pool", "bench-fleet", volume, check=False)
                remove_pool(daemon, "bench-fleet")
    finally:
        daemon.stop()
    return {
        "guests": f"vmware-deb12 (OVA, initramfs MODULES={vmware_debian.SPECS[layout].initramfs}), phony rocky9, "
                  "phony sles15, blank (blocked)",
        "sequential seconds (parallel 1)": round(sequential, 1),
        "two at a time seconds (parallel 2)": round(parallel, 1),
        "outcomes (each run)": f"{seq_data['summary']} / {par_data['summary']}",
        "guests, one at a time": per_guest(seq_data),
        "guests, two at a time": per_guest(par_data),
        "ratio (two at a time / sequential)": round(parallel / sequential, 3),
        "best ratio this fleet allows": round(best_ratio(sequential, seq_data), 3),
        "goal": "<= 0.6",
    }


def main() -> None:
    # The fleet of the integration test (the VMware template's initramfs, which conversion rebuilds),
    # then the same with Debian's default MODULES=most initramfs, which conversion keeps: a fleet whose
    # guests are closer in size.
    report("fleet", measure("plain"))
    report("fleet_most", measure("most"))


if __name__ == "__main__":
    main()
