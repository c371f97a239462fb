"""The SSH connection dies while the conversion server copies the disk over the tunnel.

A small convertible phony guest (RHEL-like, converts in about a minute) is the
physical machine's test disk, served at a limited rate so the copy takes a few
seconds; the sshd session process is killed once the copy phase starts. The run
must fail with a message that names the lost connection, the session's ``status``
must say failed, the physical side must run its ``fail`` command, and nothing may
be left on either side.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.guests import convertible
from tests.hashing import sha256
from tests.p2v_net import (
    REPO,
    listening_ports,
    netns_processes,
    p2v_network,
    processes_left,
    run_tasks_in_netns,
    sshd_in_netns,
)

pytestmark = pytest.mark.integration

CONVERT = """
import json, sys
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.conversion import ConvertOptions, run_convert
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import V2VError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec
try:
    result = run_convert(SourceSpec(input="p2v", path=sys.argv[1], work_dir=sys.argv[2]),
                         ConvertOptions(output="local", output_dir=sys.argv[3]))
except V2VError as exc:
    print(json.dumps(exc.to_dict()))
    sys.exit(1)
print(json.dumps(result.to_dict()))
"""


def test_connection_killed_mid_copy(tmp_path: Path) -> None:
    guest = convertible.build("phony-rocky9")
    disk = tmp_path / "physical.raw"
    subprocess.run(["qemu-img", "convert", "-f", guest.format, "-O", "raw", str(guest.disk), str(disk)], check=True)
    source_hash = sha256(disk)
    fail_marker = tmp_path / "fail-ran"
    with p2v_network() as net, sshd_in_netns(net.server, net.server_ip, tmp_path / "sshd") as sshd:
        task = {"kvmigrate.v2v.prepare_p2v_host": {
            "server": net.server_ip, "private_key": sshd.client_key,
            "host_key_fingerprint": [sshd.host_key_fingerprint], "test_disk": str(disk), "name": "phys02",
            "nbd_rate": "16M", "keepalive_interval": 5, "fail": f"echo failed > {fail_marker}",
            "state_dir": str(tmp_path / "state")}}
        prepared = run_tasks_in_netns(net.physical, [{"name": "prepare", "register": "p", **task}], tmp_path)
        assert prepared.rc == 0 and not prepared.results["p"].get("failed"), prepared.output
        remote = Path(prepared.results["p"]["remote_dir"])
        work, out = tmp_path / "work", tmp_path / "out"
        env = dict(os.environ, PYTHONPATH=f"{REPO / '.collections'}{os.pathsep}{REPO}")
        conversion = subprocess.Popen(["ip", "netns", "exec", net.server, sys.executable, "-c", CONVERT, str(remote),
                                       str(work), str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env)
        status_json = work / "kvmigrate-phys02" / "status.json"
        killed_in = None
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and conversion.poll() is None:
            try:
                phase = json.loads(status_json.read_text()).get("phase")
            except (OSError, ValueError):
                phase = None
            if phase == "copy":
                killed_in = phase
                for pid in sshd.session_pids():
                    os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.2)
        stdout, stderr = conversion.communicate(timeout=300)
        assert killed_in == "copy", f"the copy phase was never seen: {stdout} {stderr}"
        assert conversion.returncode == 1, stdout + stderr
        error = json.loads(stdout.strip().splitlines()[-1])
        assert "connection to the physical machine was lost" in error["msg"], error
        assert error["phase"] == "copy"
        status = json.loads((remote / "status").read_text())
        assert status["state"] == "failed" and "connection to the physical machine was lost" in status["error"]
        assert "conversion failed" in (remote / "virt-v2v-conversion-log.txt").read_text()
        assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (netns_processes(net.physical) or not fail_marker.exists()):
            time.sleep(0.5)
        assert netns_processes(net.physical) == []
        assert fail_marker.read_text() == "failed\n"
        assert [p for p in listening_ports(net.server) if p.startswith("127.0.0.1:")] == []
        left = processes_left(net.server, ignore=("sshd",))
        assert left == []
        state = json.loads((tmp_path / "state" / "session.json").read_text())
        assert state["state"] == "disconnected"
        shutil.rmtree(remote)
    assert sha256(disk) == source_hash
