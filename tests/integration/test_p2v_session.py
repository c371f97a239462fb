"""prepare_p2v_host against a real sshd in a "server" network namespace, run from a "physical" one.

A small raw file is the test disk, so these run in seconds. Every test checks
that nothing is left running (no process in the physical namespace, no port on
the server's loopback) and that no key or password shows up anywhere.
"""

from __future__ import annotations

import glob
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hashing import sha256
from tests.p2v_net import (
    P2VNet,
    Sshd,
    listening_ports,
    netns_processes,
    p2v_network,
    python_in_netns,
    run_tasks_in_netns,
    sshd_in_netns,
)

pytestmark = pytest.mark.integration

SECRET_PASSWORD = "Pa55-w0rd-that-must-not-leak"


@pytest.fixture
def small_disk(tmp_path: Path) -> Path:
    disk = tmp_path / "physical-disk.raw"
    with open(disk, "wb") as handle:
        handle.truncate(64 << 20)
        handle.seek(1 << 20)
        handle.write(b"P2V-TEST-DATA" * 1000)
    return disk


@pytest.fixture
def net() -> Iterator[P2VNet]:
    with p2v_network() as made:
        yield made


@pytest.fixture
def sshd(net: P2VNet, tmp_path: Path) -> Iterator[Sshd]:
    with sshd_in_netns(net.server, net.server_ip, tmp_path / "sshd") as server:
        yield server


def _session_dirs() -> set[str]:
    return set(glob.glob("/tmp/virt-p2v-*"))


@pytest.fixture(autouse=True)
def _remove_new_session_dirs() -> Iterator[None]:
    before = _session_dirs()
    yield
    for directory in _session_dirs() - before:
        shutil.rmtree(directory, ignore_errors=True)


def _assert_nothing_left(net: P2VNet, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = netns_processes(net.physical)
        ports = [p for p in listening_ports(net.server) if p.startswith("127.0.0.1:")]
        if not left and not ports:
            return
        time.sleep(0.5)
    raise AssertionError(f"left behind: processes {left}, server loopback ports {ports}")


def _task(net: P2VNet, sshd: Sshd, disk: Path, tmp_path: Path, **overrides: object) -> dict:
    args = {"server": net.server_ip, "private_key": sshd.client_key,
            "host_key_fingerprint": [sshd.host_key_fingerprint], "test_disk": str(disk),
            "state_dir": str(tmp_path / "state"), "keepalive_interval": 5, "interfaces": [net.physical_if],
            "networks": {net.physical_if: "default"}, "name": "phys01"}
    args.update(overrides)
    return {"kvmigrate.v2v.prepare_p2v_host": {k: v for k, v in args.items() if v is not None}}


def _key_body(sshd: Sshd) -> str:
    lines = [line for line in sshd.client_key.splitlines() if line and not line.startswith("-----")]
    return max(lines, key=len)


def _assert_no_secrets(texts: list[str], sshd: Sshd) -> None:
    body = _key_body(sshd)
    for text in texts:
        assert body not in text
        assert SECRET_PASSWORD not in text


def test_prepare_idempotent_read_only_and_absent(net: P2VNet, sshd: Sshd, small_disk: Path, tmp_path: Path) -> None:
    """check → real → verify on the server → check → real again → absent → absent again, through Ansible."""
    before_hash = sha256(small_disk)
    dirs_before = _session_dirs()
    cmdline = f"quiet p2v.vcpu=2 p2v.memory=1G p2v.o=local p2v.password={SECRET_PASSWORD}"
    task = _task(net, sshd, small_disk, tmp_path, cmdline=cmdline)
    first = run_tasks_in_netns(net.physical, [{"name": "check", **task, "register": "check1", "check_mode": True},
                                              {"name": "real", **task, "register": "real1"}], tmp_path)
    assert first.rc == 0, first.output
    check1, real1 = first.results["check1"], first.results["real1"]
    assert check1["changed"] is True and any("read-only over NBD" in a for a in check1["actions"]), check1
    assert real1["changed"] is True and not real1.get("failed"), real1.get("msg")
    remote = Path(real1["remote_dir"])
    assert _session_dirs() - dirs_before == {str(remote)}
    assert remote.name.startswith("virt-p2v-") and len(remote.name.split("-")[-1]) == 8
    assert real1["host_key_fingerprint"] == sshd.host_key_fingerprint
    assert real1["conversion_settings"] == {"output": "local"}
    assert real1["settings"]["password"] == "********"
    files = {p.name for p in remote.iterdir()}
    assert {"physical.xml", "name", "time", "p2v-version", "hardware.json", "lscpu"} <= files, files
    assert (remote / "name").read_text() == "phys01\n"
    xml = (remote / "physical.xml").read_text()
    port = real1["ports"][0]["remote_port"]
    assert f'port="{port}"' in xml and "<vcpu>2</vcpu>" in xml and '<memory unit="KiB">1048576</memory>' in xml

    # The server reads the disk through the tunnel and cannot write it.
    probe = python_in_netns(net.server, """
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
print("size", h.get_size(), "ro", h.is_read_only())
print("data", h.pread(13, 1 << 20).decode())
try:
    h.pwrite(b"X" * 512, 0)
    print("WRITE ACCEPTED")
except nbd.Error as exc:
    print("write refused:", exc)
""", f"nbd://127.0.0.1:{port}")
    assert probe.returncode == 0, probe.stderr
    assert f"size {64 << 20} ro True" in probe.stdout and "data P2V-TEST-DATA" in probe.stdout
    assert "write refused" in probe.stdout and "WRITE ACCEPTED" not in probe.stdout

    second = run_tasks_in_netns(net.physical, [{"name": "check", **task, "register": "check2", "check_mode": True},
                                               {"name": "real", **task, "register": "real2"}], tmp_path)
    assert second.rc == 0, second.output
    assert second.results["check2"]["changed"] is False
    assert second.results["real2"]["changed"] is False
    assert second.results["real2"]["remote_dir"] == str(remote)

    absent = {"kvmigrate.v2v.prepare_p2v_host": {"state": "absent", "state_dir": str(tmp_path / "state")}}
    third = run_tasks_in_netns(net.physical, [{"name": "check", **absent, "register": "a0", "check_mode": True},
                                              {"name": "absent", **absent, "register": "a1"},
                                              {"name": "again", **absent, "register": "a2"}], tmp_path)
    assert third.rc == 0, third.output
    assert [third.results[k]["changed"] for k in ("a0", "a1", "a2")] == [True, True, False]
    _assert_nothing_left(net)
    assert sha256(small_disk) == before_hash
    texts = [first.output, second.output, third.output, json.dumps(first.results), json.dumps(second.results)]
    texts += [p.read_text(errors="replace") for p in (tmp_path / "state").iterdir() if p.is_file()]
    texts += [p.read_text(errors="replace") for p in remote.iterdir() if p.is_file()]
    _assert_no_secrets(texts, sshd)


def test_unknown_host_key_is_refused_and_nothing_starts(net: P2VNet, sshd: Sshd, small_disk: Path,
                                                        tmp_path: Path) -> None:
    dirs_before = _session_dirs()
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    run = run_tasks_in_netns(net.physical, [
        {"name": "pinned other", "register": "pinned",
         **_task(net, sshd, small_disk, tmp_path, host_key_fingerprint=["SHA256:" + "A" * 43])},
        {"name": "known_hosts", **_task(net, sshd, small_disk, tmp_path, host_key_fingerprint=None,
                                        known_hosts=str(empty_known_hosts)), "register": "unknown"},
    ], tmp_path)
    pinned, unknown = run.results["pinned"], run.results["unknown"]
    assert pinned["failed"] and "does NOT match" in pinned["msg"] and sshd.host_key_fingerprint in pinned["msg"]
    assert unknown["failed"] and "is unknown" in unknown["msg"] and sshd.host_key_fingerprint in unknown["msg"]
    assert unknown["error"] == "HostKeyError"
    _assert_nothing_left(net, timeout=5)
    assert _session_dirs() == dirs_before
    assert "Accepted" not in sshd.log and "Failed" not in sshd.log  # no credential was ever sent


def test_wrong_password_is_a_clear_error_and_nothing_is_left(net: P2VNet, sshd: Sshd, small_disk: Path,
                                                             tmp_path: Path) -> None:
    dirs_before = _session_dirs()
    run = run_tasks_in_netns(net.physical, [
        {"name": "wrong password", **_task(net, sshd, small_disk, tmp_path, private_key=None,
                                           password=SECRET_PASSWORD), "register": "r"}], tmp_path)
    result = run.results["r"]
    assert result["failed"] and "refused the password of user 'root'" in result["msg"], result
    _assert_nothing_left(net, timeout=5)
    assert _session_dirs() == dirs_before
    assert "Failed password for root" in sshd.log
    texts = [run.output, json.dumps(run.results)]
    texts += [p.read_text(errors="replace") for p in (tmp_path / "state").glob("*") if p.is_file()]
    _assert_no_secrets(texts, sshd)


def test_forwarding_disabled_names_allowtcpforwarding(net: P2VNet, small_disk: Path, tmp_path: Path) -> None:
    with sshd_in_netns(net.server, net.server_ip, tmp_path / "sshd-nofwd", allow_tcp_forwarding="no") as sshd:
        dirs_before = _session_dirs()
        run = run_tasks_in_netns(net.physical, [
            {"name": "no forwarding", **_task(net, sshd, small_disk, tmp_path), "register": "r"}], tmp_path)
        result = run.results["r"]
        assert result["failed"] and "AllowTcpForwarding" in result["msg"], result
        assert result["error"] == "ForwardingError"
        _assert_nothing_left(net, timeout=10)
        assert _session_dirs() == dirs_before


def test_unknown_kernel_cmdline_key_fails_before_anything(net: P2VNet, sshd: Sshd, small_disk: Path,
                                                          tmp_path: Path) -> None:
    run = run_tasks_in_netns(net.physical, [
        {"name": "typo", **_task(net, sshd, small_disk, tmp_path, cmdline="p2v.sever=x"), "register": "r"}], tmp_path)
    assert run.results["r"]["failed"] and "p2v.sever" in run.results["r"]["msg"]
    _assert_nothing_left(net, timeout=2)


def test_supervisor_runs_post_when_the_server_reports_done(net: P2VNet, sshd: Sshd, small_disk: Path,
                                                           tmp_path: Path) -> None:
    marker = tmp_path / "post-ran"
    run = run_tasks_in_netns(net.physical, [
        {"name": "prepare", **_task(net, sshd, small_disk, tmp_path, post=f"echo done > {marker}"),
         "register": "r"}], tmp_path)
    assert run.rc == 0 and not run.results["r"].get("failed"), run.output
    remote = Path(run.results["r"]["remote_dir"])
    (remote / "status").write_text(json.dumps({"state": "done"}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not marker.exists():
        time.sleep(0.5)
    assert marker.read_text() == "done\n"
    _assert_nothing_left(net)
    state = json.loads((tmp_path / "state" / "session.json").read_text())
    assert state["state"] == "done"
