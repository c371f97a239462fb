"""playbooks/p2v.yml and the p2v role: a small inventory, one machine that converts and one that cannot
be prepared; the report names both; PXE entries carry a valid p2v.* kernel command line.

The conversion server and both "physical machines" are Ansible hosts with a local connection inside the
server's network namespace (the machines connect to the server's veth address over SSH, as a real one
would); the machines' test disks are a convertible phony guest, which converts in about a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.p2v.cmdline import parse_kernel_cmdline
from tests.guests import convertible
from tests.hashing import sha256
from tests.p2v_net import REPO, listening_ports, p2v_network, processes_left, sshd_in_netns

pytestmark = pytest.mark.integration


def _playbook(netns: str | None, inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_NOCOLOR="1")
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
            str(REPO / "playbooks/p2v.yml"), *args]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=1200)


def test_batch_p2v_reports_each_machine(tmp_path: Path) -> None:
    guest = convertible.build("phony-rocky9")
    disk = tmp_path / "rack1.raw"
    subprocess.run(["qemu-img", "convert", "-f", guest.format, "-O", "raw", str(guest.disk), str(disk)], check=True)
    disk_hash = sha256(disk)
    with p2v_network() as net, sshd_in_netns(net.server, net.server_ip, tmp_path / "sshd") as sshd:
        local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        inventory = tmp_path / "inventory.yml"
        inventory.write_text(yaml.safe_dump({"all": {"children": {
            "p2v_conversion_servers": {"hosts": {"conv1": {
                **local, "p2v_server_address": net.server_ip,
                "p2v_server_host_key_fingerprint": [sshd.host_key_fingerprint]}}},
            "p2v_physical": {"vars": {**local, "p2v_conversion_server": "conv1", "p2v_test_disk": str(disk)},
                             "hosts": {
                                 "rack1-db": {"p2v_name": "rackdb", "p2v_state_dir": str(tmp_path / "s1"),
                                              "p2v_pre": f"echo pre > {tmp_path / 'pre-ran'}",
                                              "p2v_interfaces": [net.server_if],
                                              "p2v_network_map": {net.server_if: "prod"}},
                                 "rack1-web": {"p2v_username": "nobody", "p2v_state_dir": str(tmp_path / "s2")}}},
        }}}))
        extra = {"p2v_private_key": sshd.client_key, "p2v_output": "local", "p2v_output_dir": str(tmp_path / "out"),
                 "p2v_work_dir": str(tmp_path / "work"), "p2v_report_dir": str(tmp_path / "reports"),
                 "p2v_poll_interval": 3, "p2v_parallel": 2, "p2v_networks": {"prod": "default"}}
        (tmp_path / "extra.yml").write_text(yaml.safe_dump(extra))
        run = _playbook(net.server, inventory, "-e", f"@{tmp_path / 'extra.yml'}")
        assert run.returncode != 0, run.stdout[-3000:]  # one machine failed: the play says so at the end
        assert "not converted: rack1-web" in run.stdout, run.stdout[-3000:]
        report = {r["physical_host"]: r for r in json.loads((tmp_path / "reports" / "p2v-report.json").read_text())}
        assert set(report) == {"rack1-db", "rack1-web"}
        db, web = report["rack1-db"], report["rack1-web"]
        assert db["state"] == "converted" and db["name"] == "rackdb", db
        assert db["target"]["disks"][0]["path"] == str(tmp_path / "out/rackdb/rackdb-vda.raw")
        assert [p["name"] for p in db["phases"]][-1] == "output"
        assert "open-vm-tools" in (tmp_path / "reports" / "p2v-report.txt").read_text() or db["phases"]
        # the pre hook (a host variable) ran on the machine before its disks were exported
        assert (tmp_path / "pre-ran").read_text() == "pre\n"
        assert web["state"] == "failed" and web["failed_in"] == "prepare"
        assert "refused the private key of user 'nobody'" in web["message"]
        assert json.loads((Path(db["remote_dir"]) / "status").read_text())["state"] == "done"
        assert "network=\"prod\"" in (Path(db["remote_dir"]) / "physical.xml").read_text()
        assert "rack1-web -> rack1-web on conv1: FAILED" in (tmp_path / "reports" / "p2v-report.txt").read_text()
        assert processes_left(net.server, ignore=("sshd",)) == []
        assert [p for p in listening_ports(net.server) if p.startswith("127.0.0.1:")] == []
        assert sshd.client_key.splitlines()[1] not in run.stdout
        shutil.rmtree(db["remote_dir"])
    assert sha256(disk) == disk_hash


def test_pxe_entries_carry_the_p2v_command_line(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {
        "p2v_conversion_servers": {"hosts": {"conv1": {"p2v_server_address": "10.0.0.10"}}},
        "p2v_physical": {"vars": {"p2v_conversion_server": "conv1"}, "hosts": {
            "db01.example.com": {"p2v_pxe_mac": "D4:BE:D9:12:34:56", "p2v_disks": ["sda", "sdb"],
                                 "p2v_network_map": {"em1": "prod", "*": "other"}, "p2v_password": "secret",
                                 "p2v_identity": "https://pxe/p2v.key", "p2v_post": "poweroff -f"},
            "web01.example.com": {"p2v_pxe_mac": "d4:be:d9:12:34:99", "p2v_name": "web01-kvm"}}}}}}))
    for fmt in ("pxelinux", "grub"):
        out = tmp_path / fmt
        run = _playbook(None, inventory, "--tags", "pxe", "-e", f"p2v_pxe_dir={out}", "-e", f"p2v_pxe_format={fmt}",
                        "-e", "p2v_output=libvirt",
                        "-e", json.dumps({"p2v_pre": "modprobe nbd", "p2v_fail": "logger failed"}))
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        if fmt == "pxelinux":
            entry = (out / "pxelinux.cfg/01-d4-be-d9-12-34-56").read_text()
            line = next(x for x in entry.splitlines() if "APPEND" in x)
            assert (out / "pxelinux.cfg/01-d4-be-d9-12-34-99").exists()
        else:
            entry = (out / "grub/p2v-db01.example.com.cfg").read_text()
            line = next(x for x in entry.splitlines() if x.strip().startswith("linux "))
        assert "secret" not in entry
        settings = parse_kernel_cmdline(line)
        assert (settings.server, settings.name, settings.disks, settings.output) == (
            "10.0.0.10", "db01", ["sda", "sdb"], "libvirt")
        assert settings.network_map == {"em1": "prod", "*": "other"}
        # hooks: role variables for every machine; a host variable wins (extra vars win over both)
        assert (settings.identity, settings.post) == ("https://pxe/p2v.key", "poweroff -f")
        assert (settings.pre, settings.fail) == ("modprobe nbd", "logger failed")
