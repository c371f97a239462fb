"""P2V test network: a "physical" and a "server" network namespace joined by a veth pair,
a private sshd in the server namespace, ansible-playbook runs inside a namespace, and a
delaying TCP relay (the kernel here has no netem) for latency benchmarks.

Everything started here is stopped by the context managers, and each test checks
that no process is left in either namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
SSHD = "/usr/sbin/sshd"


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


@dataclass
class P2VNet:
    physical: str  # namespace names
    server: str
    physical_ip: str
    server_ip: str
    physical_if: str
    server_if: str

    def exec_argv(self, netns: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", netns, *argv]

    def pids(self, netns: str) -> list[int]:
        out = _run("ip", "netns", "pids", netns, check=False).stdout
        return [int(p) for p in out.split()]


def netns_processes(netns: str) -> list[str]:
    """Command lines of the processes left in ``netns`` (empty when clean)."""
    found = []
    for pid in _run("ip", "netns", "pids", netns, check=False).stdout.split():
        try:
            found.append(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip())
        except OSError:
            continue
    return found


def processes_left(netns: str, *, ignore: tuple[str, ...] = (), timeout: float = 20.0) -> list[str]:
    """The processes still in ``netns`` (minus ``ignore`` matches) once it settles.

    Ansible's async_wrapper watcher checks its module every 5 seconds, so it can
    outlive a finished job by that much; waiting a bounded time for the namespace
    to empty tells a lingering watcher from a process that was really left behind.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in netns_processes(netns) if not any(i in p for i in ignore)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.5)


def listening_ports(netns: str) -> list[str]:
    """TCP listeners in ``netns`` as 'addr:port' (from ss)."""
    out = _run("ip", "netns", "exec", netns, "ss", "-Htln", check=False).stdout
    return [line.split()[3] for line in out.splitlines() if line.strip()]


@contextlib.contextmanager
def p2v_network(*, physical_mac: str | None = None) -> Iterator[P2VNet]:
    """Two namespaces and a veth pair (10.234.x.1 physical, 10.234.x.2 server)."""
    tag = secrets.token_hex(3)
    net = P2VNet(physical=f"p2v-phys-{tag}", server=f"p2v-srv-{tag}",
                 physical_ip=f"10.234.{int(tag[:2], 16)}.1", server_ip=f"10.234.{int(tag[:2], 16)}.2",
                 physical_if=f"p2vp{tag}", server_if=f"p2vs{tag}")
    try:
        _run("ip", "netns", "add", net.physical)
        _run("ip", "netns", "add", net.server)
        _run("ip", "link", "add", net.physical_if, "type", "veth", "peer", "name", net.server_if)
        _run("ip", "link", "set", net.physical_if, "netns", net.physical)
        _run("ip", "link", "set", net.server_if, "netns", net.server)
        for ns, ifname, ip in ((net.physical, net.physical_if, net.physical_ip),
                               (net.server, net.server_if, net.server_ip)):
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            if ns == net.physical and physical_mac:
                _run("ip", "-n", ns, "link", "set", ifname, "address", physical_mac)
            _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", ifname)
            _run("ip", "-n", ns, "link", "set", ifname, "up")
        yield net
    finally:
        for ns in (net.physical, net.server):
            for pid in net.pids(ns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _run("ip", "netns", "del", ns, check=False)


@dataclass
class Sshd:
    netns: str
    address: str
    port: int
    directory: Path
    host_key_fingerprint: str
    known_hosts: Path
    client_key: str  # private key text (ed25519, no passphrase)
    process: subprocess.Popen[bytes]

    @property
    def log(self) -> str:
        return (self.directory / "sshd.log").read_text(errors="replace")

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (children of the listener)."""
        out = _run("pgrep", "-P", str(self.process.pid), check=False).stdout
        return [int(p) for p in out.split()]


@contextlib.contextmanager
def sshd_in_netns(netns: str, address: str, directory: Path, *, allow_tcp_forwarding: str = "yes",
                  port: int = 22) -> Iterator[Sshd]:
    """A private sshd listening on ``address`` inside ``netns`` (root by key; passwords always fail)."""
    directory.mkdir(parents=True, exist_ok=True)
    host_key = directory / "ssh_host_ed25519_key"
    client_key = directory / "client_ed25519"
    for path in (host_key, client_key):
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "p2v-test", "-f", str(path))
    (directory / "authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
    fingerprint = _run("ssh-keygen", "-lf", f"{host_key}.pub").stdout.split()[1]
    known_hosts = directory / "known_hosts"
    host_entry = address if port == 22 else f"[{address}]:{port}"
    known_hosts.write_text(f"{host_entry} {Path(f'{host_key}.pub').read_text().split(' ')[0]} "
                           f"{Path(f'{host_key}.pub').read_text().split(' ')[1]}\n")
    config = directory / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", f"ListenAddress {address}", f"HostKey {host_key}", f"PidFile {directory}/sshd.pid",
        f"AuthorizedKeysFile {directory}/authorized_keys", "StrictModes no", "PermitRootLogin yes",
        "PasswordAuthentication yes", "KbdInteractiveAuthentication no", "UsePAM no",
        f"AllowTcpForwarding {allow_tcp_forwarding}", "Subsystem sftp internal-sftp", "LogLevel VERBOSE",
        "MaxAuthTries 3", "ClientAliveInterval 0", ""]))
    Path("/run/sshd").mkdir(exist_ok=True)
    log = open(directory / "sshd.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(["ip", "netns", "exec", netns, SSHD, "-D", "-e", "-f", str(config)],
                               stdout=log, stderr=log)
    sshd = Sshd(netns=netns, address=address, port=port, directory=directory, host_key_fingerprint=fingerprint,
                known_hosts=known_hosts, client_key=client_key.read_text(), process=process)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if f"{address}:{port}" in listening_ports(netns):
                break
            if process.poll() is not None:
                raise RuntimeError(f"sshd exited: {sshd.log}")
            time.sleep(0.1)
        else:
            raise RuntimeError(f"sshd did not listen: {sshd.log}")
        yield sshd
    finally:
        for pid in sshd.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@dataclass
class NetnsPlaybookRun:
    rc: int
    output: str
    results: dict[str, Any]


def run_tasks_in_netns(netns: str, tasks: list[dict[str, Any]], tmp_path: Path, *, check: bool = False,
                       extra_args: list[str] | None = None) -> NetnsPlaybookRun:
    """Like tests.playbook.run_tasks, but ansible-playbook runs inside ``netns``."""
    index = len(list(tmp_path.iterdir()))
    results_file = tmp_path / f"netns-results-{index}.json"
    registered = [t["register"] for t in tasks if "register" in t]
    body = [dict(t, ignore_errors=True) if "register" in t else t for t in tasks]
    save = {"name": "Save results", "ansible.builtin.copy": {
        "dest": str(results_file),
        "content": "{{ {" + ", ".join(f"'{r}': {r} | default(None)" for r in registered) + "} | to_json }}",
    }, "check_mode": False}
    play = [{"name": "test", "hosts": "localhost", "gather_facts": False, "tasks": [*body, save]}]
    playbook = tmp_path / f"netns-play-{index}.yml"
    playbook.write_text(yaml.safe_dump(play, sort_keys=False))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_NOCOLOR="1")
    argv = ["ip", "netns", "exec", netns, str(Path(sys.executable).parent / "ansible-playbook"),
            "-i", str(REPO / "playbooks/inventory/localhost.yml"), str(playbook), *(extra_args or [])]
    if check:
        argv.append("--check")
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    return NetnsPlaybookRun(rc=proc.returncode, output=proc.stdout + proc.stderr, results=results)


def python_in_netns(netns: str, code: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` inside ``netns`` with this interpreter (the collection importable)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / ".collections") + os.pathsep + str(REPO))
    return subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", code, *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=timeout, check=False)


class DelayRelay:
    """A TCP relay that delays every chunk by ``one_way_ms`` in each direction (RTT = 2 x that).

    Runs as threads in this process, listening on ``listen`` and connecting to
    ``target``. Data is forwarded in order after its delay, so throughput is
    bounded by the endpoints' windows, as on a real long link.
    """

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], one_way_ms: float,
                 link_buffer: int = 32 << 20) -> None:
        self.delay = one_way_ms / 1000.0
        self.link_buffer = link_buffer
        self.target = target
        self.server = socket.create_server(listen)
        self.address = self.server.getsockname()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> DelayRelay:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self.threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.server.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client = self.server.accept()[0]
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for src, dst in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._one_way, args=(src, dst), daemon=True)
                thread.start()
                self.threads.append(thread)

    def _one_way(self, src: socket.socket, dst: socket.socket) -> None:
        queue: deque[tuple[float, bytes]] = deque()
        queued = 0
        closed = False
        try:
            while not self.stopping.is_set():
                timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else 1.0
                # A bounded "link buffer": stop reading while this much is in flight, so
                # the endpoints' windows (not this relay) decide the throughput.
                if not closed and queued < self.link_buffer:
                    readable = select.select([src], [], [], timeout)[0]
                    if readable:
                        data = src.recv(1 << 18)
                        if not data:
                            closed = True
                        else:
                            queue.append((time.monotonic() + self.delay, data))
                            queued += len(data)
                elif queue:
                    time.sleep(timeout)
                now = time.monotonic()
                while queue and queue[0][0] <= now:
                    data = queue.popleft()[1]
                    queued -= len(data)
                    dst.sendall(data)
                if closed and not queue:
                    break
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


def serve_delay_relay(listen_host: str, listen_port: int, target_host: str, target_port: int,
                      one_way_ms: float) -> None:
    """Run a DelayRelay until killed (for ``python -c`` inside a namespace)."""
    with DelayRelay((listen_host, listen_port), (target_host, target_port), one_way_ms):
        print("ready", flush=True)
        threading.Event().wait()
