"""The migrate role with two conversion hosts, one of which fails before the role runs.

Both hosts are aliases of this machine (ansible_connection=local). conv-b fails its
preparation (the conversion_host role asks for more free space than any disk has), so
it is out of the play when the migrate role assigns guests: the round robin gives every
unpinned guest to conv-a, and a guest pinned to conv-b (conversion_host) is in the
report as failed, with the reason, instead of vanishing. The guests' disks do not exist,
so each conversion fails quickly while opening its source (no appliance is needed here).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.test_fleet import run_playbook

pytestmark = pytest.mark.integration

GUESTS = ("lost-1", "lost-2", "lost-3")


def test_guests_of_a_failed_conversion_host_are_reassigned_or_reported(tmp_path: Path) -> None:
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"conversion_hosts": {"hosts": {
        "conv-a": {**local, "kvmigrate_prepare_conversion_hosts": False},
        "conv-b": {**local, "kvmigrate_prepare_conversion_hosts": True,
                   "conversion_host_install_packages": False, "conversion_host_warm_appliance": False,
                   "conversion_host_accelerator": "tcg", "conversion_host_min_free_gb": 1 << 30}}}}}}))
    report_dir, work = tmp_path / "report", tmp_path / "work"
    missing = tmp_path / "no-such-disk.raw"
    extra = {
        "migrate_guests": [
            *({"name": name, "source": {"input": "disk", "path": [str(missing)], "format": "raw"}}
              for name in GUESTS),
            {"name": "pinned-to-b", "conversion_host": "conv-b",
             "source": {"input": "disk", "path": [str(missing)], "format": "raw"}}],
        "migrate_output": "local", "migrate_output_dir": str(tmp_path / "out"),
        "migrate_work_dir": str(work), "migrate_report_dir": str(report_dir), "migrate_poll_interval": 1,
    }
    rc, output, _seconds = run_playbook("migrate_ova.yml", inventory, extra, tmp_path, "failed-host")

    assert rc == 2, output[-4000:]
    # conv-b failed early, with the conversion_host role's message
    assert "fatal: [conv-b]" in output and "free" in output, output[-6000:]
    report = json.loads((report_dir / "fleet-report.json").read_text())
    guests = {g["name"]: g for g in report["guests"]}
    assert sorted(guests) == sorted((*GUESTS, "pinned-to-b")), report
    # the unpinned guests all went to the host still in the play, and failed on their own
    for name in GUESTS:
        g = guests[name]
        assert g["conversion_host"] == "conv-a" and g["status"] == "failed", g
        assert g["failed_phase"] == "open" and "no-such-disk.raw" in g["reason"], g
    # the guest pinned to the failed host is reported, failed, saying why
    pinned = guests["pinned-to-b"]
    assert pinned["conversion_host"] == "conv-b" and pinned["status"] == "failed", pinned
    assert pinned["failed_phase"] == "conversion-host"
    assert "conversion host conv-b failed" in pinned["reason"], pinned
    assert report["summary"] == {"failed": 4}
    assert "4 of 4 guests were not migrated" in output and "pinned-to-b (failed in conversion-host" in output
    table = (report_dir / "fleet-report.txt").read_text()
    assert "pinned-to-b" in table and "conversion host conv-b failed" in table
    assert not (work / "kvmigrate-pinned-to-b").exists()
