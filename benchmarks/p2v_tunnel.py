"""P2V disk transfer over the SSH reverse tunnel against a plain ``ssh … cat`` of the same bytes,
both over the same path with a 20 ms round trip added.

Two network namespaces ("physical", "server") joined by a veth pair; sshd in the server namespace;
in the physical namespace a delaying TCP relay (10 ms each way; the kernel here has no netem) in
front of it. prepare_p2v_host's engine exports a 256 MiB file of random bytes through the relay and
the tunnel; the server reads all of it with ``nbdcopy … null:``. The reference sends the same file
with OpenSSH: ``ssh -p RELAY root@127.0.0.1 'cat > /dev/null' < file``. Printed: both rates and
the ratio tunnel / ssh-cat (goal >= 0.8). nbdcopy opens several NBD connections (nbdkit allows
multi-conn), each its own forwarded SSH channel with its own window, so on a link with latency the
tunnel can beat one ``cat`` stream, whose throughput one channel window per round trip bounds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import report
from tests.p2v_net import REPO, p2v_network, python_in_netns, sshd_in_netns

SIZE = 256 << 20
RELAY_PORT = 2222
ONE_WAY_MS = 10.0

PREPARE = """
import json, sys
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.p2v.session import PrepareOptions, prepare
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.p2v.cmdline import P2VSettings
key = open(sys.argv[2]).read()
settings = P2VSettings(server="127.0.0.1", port=int(sys.argv[3]), name="bench")
options = PrepareOptions(state=sys.argv[1], settings=settings, private_key=key, host_key_fingerprint=[sys.argv[4]],
                         test_disk=sys.argv[5], test_disk_format="raw", state_dir=sys.argv[6])
print(json.dumps(prepare(options)))
"""


def _prepare(netns: str, state: str, key: Path, fingerprint: str, disk: Path, state_dir: Path) -> dict:
    import json

    run = python_in_netns(netns, PREPARE, state, str(key), str(RELAY_PORT), fingerprint, str(disk), str(state_dir))
    if run.returncode != 0:
        raise RuntimeError(run.stderr[-3000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="kvmigrate-bench-p2v-", dir="/var/tmp") as tmp_name:
        tmp = Path(tmp_name)
        disk = tmp / "disk.raw"
        with open(disk, "wb") as handle:
            for _mib in range(SIZE >> 20):
                handle.write(os.urandom(1 << 20))
        with p2v_network() as net, sshd_in_netns(net.server, net.server_ip, tmp / "sshd") as sshd:
            key = tmp / "sshd" / "client_ed25519"
            env = dict(os.environ, PYTHONPATH=f"{REPO / '.collections'}{os.pathsep}{REPO}")
            relay = subprocess.Popen(
                ["ip", "netns", "exec", net.physical, sys.executable, "-c",
                 "import sys; from tests.p2v_net import serve_delay_relay; "
                 f"serve_delay_relay('127.0.0.1', {RELAY_PORT}, '{net.server_ip}', 22, {ONE_WAY_MS})"],
                stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
            try:
                assert relay.stdout is not None and relay.stdout.readline().strip() == "ready"
                session = _prepare(net.physical, "present", key, sshd.host_key_fingerprint, disk, tmp / "state")
                port = session["ports"][0]["remote_port"]
                start = time.monotonic()
                subprocess.run(["ip", "netns", "exec", net.server, "nbdcopy", f"nbd://127.0.0.1:{port}", "null:"],
                               check=True, capture_output=True)
                tunnel_seconds = time.monotonic() - start
                _prepare(net.physical, "absent", key, sshd.host_key_fingerprint, disk, tmp / "state")
                shutil.rmtree(session["remote_dir"], ignore_errors=True)
                known_hosts = tmp / "known_hosts_relay"
                known_hosts.write_text(f"[127.0.0.1]:{RELAY_PORT} " + " ".join(
                    (tmp / "sshd" / "ssh_host_ed25519_key.pub").read_text().split()[:2]) + "\n")
                start = time.monotonic()
                with open(disk, "rb") as data:
                    subprocess.run(["ip", "netns", "exec", net.physical, "ssh", "-i", str(key), "-p", str(RELAY_PORT),
                                    "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
                                    "-o", "BatchMode=yes", "root@127.0.0.1", "cat > /dev/null"],
                                   stdin=data, check=True, capture_output=True)
                ssh_seconds = time.monotonic() - start
            finally:
                relay.terminate()
                relay.wait()
        mib = SIZE / (1 << 20)
        report("p2v_tunnel", {
            "bytes": SIZE,
            "added round trip ms": 2 * ONE_WAY_MS,
            "tunnel (nbdcopy over reverse forward) MiB/s": round(mib / tunnel_seconds, 1),
            "ssh cat MiB/s": round(mib / ssh_seconds, 1),
            "ratio (tunnel / ssh cat)": round(ssh_seconds / tunnel_seconds, 3),
            "goal": ">= 0.8",
        })


if __name__ == "__main__":
    main()
