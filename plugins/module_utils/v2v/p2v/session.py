# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""prepare_p2v_host's engine: one P2V session of this physical machine.

``state: present``:

1. settings from the module options over the kernel command line;
2. hardware facts, then which disks, CD-ROMs and NICs to describe;
3. the ``pre`` command;
4. a detached supervisor process (double fork: it outlives the module) that
   opens the SSH connection (host key verified first), starts one read-only
   NBD server per disk on loopback, asks for one reverse forward per disk,
   creates ``/tmp/virt-p2v-YYYYMMDD-XXXXXXXX`` over SFTP and uploads
   ``physical.xml``, ``name``, ``time``, ``p2v-version`` and hardware logs,
   writes the state file and reports back through a pipe. Credentials reach
   it in memory (it is a fork), never through a file, argument or environment.
5. The supervisor then keeps the tunnels up (keepalives), watches the NBD
   servers and the session's ``status`` on the server; when the conversion is
   done it runs ``post``, when it failed or the connection is lost it runs
   ``fail``, then stops everything it started. A session therefore never
   outlives its connection: a dropped link means running the module again.

A failure before the report (unknown host key, wrong password, forwarding
refused ...) stops whatever was started and is raised in the module.

``state: absent`` stops the supervisor (which stops the NBD servers) and
removes the state file. The state file (no secrets) is the handle.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import secrets
import select
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.compat import strict_zip
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import NotSupportedError, SourceError, V2VError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.p2v import P2V_VERSION, REMOTE_DIR_PREFIX, nbd, tunnel
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.p2v.cmdline import (
    P2VSettings,
    parse_kernel_cmdline,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.p2v.facts import HardwareFacts, collect_facts
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.p2v.physical_xml import (
    PhysicalDisk,
    PhysicalMachine,
    PhysicalNIC,
    build_physical_xml,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.storage import detect_format
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.transport import ssh

STATE_VERSION = 1
STATE_FILE = "session.json"
HARDWARE_LOGS = {"dmesg": ["dmesg"], "lscpu": ["lscpu"], "lspci": ["lspci", "-vvv"], "lsscsi": ["lsscsi", "-v"],
                 "lsusb": ["lsusb", "-v"]}
_REPORT_TIMEOUT = 180.0


@dataclass
class PrepareOptions:
    """The module's options (see plugins/modules/prepare_p2v_host.py)."""

    state: str = "present"
    settings: P2VSettings = field(default_factory=P2VSettings)
    cmdline: str | None = None
    use_kernel_cmdline: bool = False
    private_key: str | None = field(default=None, repr=False)
    private_key_passphrase: str | None = field(default=None, repr=False)
    host_key_fingerprint: list[str] = field(default_factory=list)
    known_hosts: str | None = None
    test_disk: str | None = None
    test_disk_format: str | None = None
    nbd_server: str = "auto"
    nbd_rate: str | None = None
    connect_timeout: float = 30.0
    keepalive_interval: float = 30.0
    keepalive_count_max: int = 4
    status_poll_interval: float = 5.0
    state_dir: str = "/run/kvmigrate-p2v"
    root: str = "/"


@dataclass
class Selection:
    """What the session describes and exports."""

    disks: list[tuple[str, str, int]]  # (device or test image, format, size)
    removables: list[str]
    nics: list[PhysicalNIC]


# ----------------------------------------------------------------------------- settings

def effective_settings(options: PrepareOptions, kernel_cmdline_path: str = "/proc/cmdline") -> P2VSettings:
    """Kernel command line (``cmdline`` or /proc/cmdline), overridden by the module's own options."""
    base = P2VSettings()
    if options.cmdline is not None:
        base = parse_kernel_cmdline(options.cmdline)
    elif options.use_kernel_cmdline:
        with open(kernel_cmdline_path, encoding="utf-8") as handle:
            base = parse_kernel_cmdline(handle.read())
    return base.merged_with(options.settings)


def read_identity(url: str) -> str:
    """The private key named by ``p2v.identity`` (a path, file:// or http(s):// URL), kept in memory only."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("", "file"):
        path = urllib.parse.unquote(parts.path) if parts.scheme == "file" else url
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read()
        except OSError as exc:
            raise V2VError(f"cannot read the identity file: {exc.strerror}", subject=path) from exc
    if parts.scheme in ("http", "https"):
        from ansible.module_utils.urls import open_url

        try:
            with open_url(url, timeout=30) as response:
                return response.read().decode("utf-8")
        except OSError as exc:
            raise V2VError(f"cannot download the identity from {url}: {exc}") from exc
    raise NotSupportedError(f"identity URL scheme {parts.scheme!r} is not supported",
                            hint="Use a path, file://, http:// or https://")


def select_hardware(settings: P2VSettings, facts: HardwareFacts, options: PrepareOptions) -> Selection:
    """Disks, removable drives and NICs to describe, checked against the facts."""
    disks: list[tuple[str, str, int]] = []
    if options.test_disk:
        if not os.path.isfile(options.test_disk):
            raise SourceError("the test disk does not exist", subject=options.test_disk)
        fmt = options.test_disk_format or detect_format(options.test_disk)
        size = os.path.getsize(options.test_disk)
        disks.append((options.test_disk, fmt, size))
    else:
        by_name = {d.name: d for d in facts.disks}
        wanted = settings.disks if settings.disks is not None else [d.name for d in facts.disks]
        for given in wanted:
            name = given[len("/dev/"):] if given.startswith("/dev/") else given
            if name in facts.boot_devices:
                raise SourceError(f"disk {name} holds the system this machine runs from; it cannot be converted",
                                  hint="Select the machine's own disks in disks / p2v.disks")
            disk = by_name.get(name)
            if disk is None:
                known = ", ".join(sorted(by_name)) or "none"
                raise SourceError(f"disk {name} is not a fixed disk of this machine (fixed disks: {known})")
            disks.append((disk.device, "raw", disk.size_bytes))
        if not disks:
            raise SourceError("this machine has no fixed disk to convert",
                              hint="Select disks with disks / p2v.disks, or use test_disk")
    removable_names = {r.name for r in facts.removables}
    removables = list(settings.removable) if settings.removable is not None else sorted(removable_names)
    for name in removables:
        if name not in removable_names and not options.test_disk:
            raise SourceError(f"removable drive {name} does not exist on this machine")
    nic_facts = {n.name: n for n in facts.nics}
    names = settings.interfaces if settings.interfaces is not None else [n.name for n in facts.nics if not n.virtual]
    mapping = settings.network_map or {}
    nics = []
    for name in names:
        nic = nic_facts.get(name)
        if nic is None:
            raise SourceError(f"network interface {name} does not exist on this machine",
                              hint=f"Interfaces: {', '.join(sorted(nic_facts)) or 'none'}")
        nics.append(PhysicalNIC(name=name, mac=nic.mac, network=mapping.get(name, mapping.get("*", "default"))))
    return Selection(disks=disks, removables=removables, nics=nics)


def describe_machine(settings: P2VSettings, facts: HardwareFacts, selection: Selection,
                     ports: list[int]) -> PhysicalMachine:
    vcpus = settings.vcpus or facts.cpu.logical or 1
    topology = settings.vcpu_phys_topo is not False and settings.vcpus is None
    features = {"acpi": True, "apic": True, "pae": "pae" in facts.cpu.flags}
    features.update(settings.cpu_features)
    return PhysicalMachine(
        name=settings.name or facts.hostname.split(".")[0], memory_mb=settings.memory_mb or facts.memory_mb or 1024,
        vcpus=vcpus, firmware=facts.firmware, clock=settings.rtc_basis or facts.clock,
        cpu_vendor=settings.cpu_vendor or facts.cpu.vendor, cpu_model=settings.cpu_model,
        sockets=facts.cpu.sockets if topology else None, cores=facts.cpu.cores if topology else None,
        threads=facts.cpu.threads if topology else None, features=features,
        disks=[PhysicalDisk(device=d[0], port=p, size_bytes=d[2]) for d, p in strict_zip(selection.disks, ports)],
        removables=selection.removables, nics=selection.nics, generator=P2V_VERSION)


def session_fingerprint(settings: P2VSettings, options: PrepareOptions) -> str:
    """What makes two runs "the same settings" (never the secrets themselves)."""
    data = settings.given()
    data.pop("password", None)
    data.update(auth="key" if options.private_key else "password", test_disk=options.test_disk,
                test_disk_format=options.test_disk_format, nbd_server=options.nbd_server, nbd_rate=options.nbd_rate,
                host_key_fingerprint=sorted(options.host_key_fingerprint), known_hosts=options.known_hosts)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def conversion_settings(settings: P2VSettings) -> dict[str, Any]:
    """The output settings for convert_guest on the server (p2v.o, p2v.oa ...), as convert_guest names them."""
    data = {"output": settings.output, "allocation": settings.output_allocation, "uri": settings.output_connection,
            "output_format": settings.output_format, "output_storage": settings.output_storage}
    return {k: v for k, v in data.items() if v is not None}


# ----------------------------------------------------------------------------- state file

def state_path(options: PrepareOptions) -> str:
    return os.path.join(options.state_dir, STATE_FILE)


def read_state(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def write_state(path: str, data: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
    os.replace(tmp, path)


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def supervisor_alive(state: dict[str, Any]) -> bool:
    pid = state.get("supervisor_pid")
    if not pid or state.get("state") != "active":
        return False
    return _start_time(int(pid)) == state.get("supervisor_started")


# ----------------------------------------------------------------------------- module entry points

def prepare(options: PrepareOptions, *, check_mode: bool = False) -> dict[str, Any]:
    """prepare_p2v_host: make (or tear down) the P2V session; return the module's result."""
    path = state_path(options)
    current = read_state(path)
    if options.state == "absent":
        return teardown(path, current, check_mode=check_mode)
    settings = effective_settings(options)
    if not settings.server:
        raise V2VError("no conversion server: set server, or p2v.server on the kernel command line")
    facts = collect_facts(options.root)
    selection = select_hardware(settings, facts, options)
    fingerprint = session_fingerprint(settings, options)
    if current is not None and supervisor_alive(current) and current.get("fingerprint") == fingerprint:
        return _result(current, changed=False)
    actions = []
    if current is not None and supervisor_alive(current):
        actions.append("stop the running P2V session (its settings differ)")
    if settings.pre:
        actions.append(f"run the pre command: {settings.pre}")
    actions += [f"export {d[0]} read-only over NBD on 127.0.0.1" for d in selection.disks]
    actions += [f"connect to {settings.username or 'root'}@{settings.server}:{settings.port or 22} over SSH",
                f"forward {len(selection.disks)} port(s) from the server's loopback",
                f"create {REMOTE_DIR_PREFIX}YYYYMMDD-XXXXXXXX on the server with physical.xml"]
    if check_mode:
        return {"changed": True, "actions": actions, "facts": facts.to_dict(), "settings": settings.given(),
                "conversion_settings": conversion_settings(settings), "handle": path}
    if current is not None:
        teardown(path, current, check_mode=False)
    target = _ssh_target(settings, options)
    if settings.pre:
        _run_hook("pre", settings.pre)
    state = _start_supervisor(options, settings, facts, selection, target, fingerprint, path)
    return _result(state, changed=True)


def _ssh_target(settings: P2VSettings, options: PrepareOptions) -> ssh.SshTarget:
    private_key = options.private_key
    if private_key is None and settings.identity:
        private_key = read_identity(settings.identity)
    known_hosts = options.known_hosts
    if known_hosts is None and not options.host_key_fingerprint:
        default = os.path.expanduser("~/.ssh/known_hosts")
        known_hosts = default if os.path.exists(default) else None
    credentials = ssh.SshCredentials(password=settings.password, private_key=private_key,
                                     private_key_passphrase=options.private_key_passphrase)
    return ssh.SshTarget(host=settings.server or "", port=settings.port or 22, user=settings.username or "root",
                         credentials=credentials, host_key_fingerprint=list(options.host_key_fingerprint),
                         known_hosts=known_hosts, connect_timeout=options.connect_timeout,
                         server_name="the conversion server", passphrase_option="private_key_passphrase")


def _result(state: dict[str, Any], *, changed: bool) -> dict[str, Any]:
    keys = ("remote_dir", "ports", "facts", "settings", "conversion_settings", "host_key_fingerprint",
            "supervisor_pid", "physical_xml", "server", "name")
    result = {k: state.get(k) for k in keys}
    result.update(changed=changed, handle=state.get("handle"), state=state.get("state"))
    return result


def teardown(path: str, current: dict[str, Any] | None, *, check_mode: bool) -> dict[str, Any]:
    """Stop the supervisor (and with it the NBD servers and tunnels); remove the state file."""
    if current is None:
        return {"changed": False, "handle": path, "state": "absent"}
    running = supervisor_alive(current)
    pids = [p for p in current.get("nbd_pids", []) if nbd.process_alive(int(p))]
    if check_mode:
        return {"changed": True, "handle": path, "state": "absent",
                "actions": (["stop the P2V supervisor and its tunnels"] if running else []) + ["remove the state file"]}
    if running:
        _stop_pid(int(current["supervisor_pid"]))
    for pid in pids:
        # Only NBD servers the supervisor started, still named as such (pids are reused).
        if _cmdline(pid).split("\0")[0].endswith(("nbdkit", "qemu-nbd")):
            _stop_pid(pid)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return {"changed": True, "handle": path, "state": "absent", "remote_dir": current.get("remote_dir")}


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def _stop_pid(pid: int, timeout: float = 15.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and nbd.process_alive(pid) and not _zombie(pid):
        time.sleep(0.1)
    if nbd.process_alive(pid) and not _zombie(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _run_hook(which: str, command: str) -> None:
    """Run the pre/post/fail command (a shell command line, as virt-p2v runs it)."""
    try:
        proc = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired as exc:
        raise V2VError(f"the {which} command did not finish within 600 s: {command}") from exc
    if proc.returncode != 0:
        raise V2VError(f"the {which} command failed with exit code {proc.returncode}: {command}: "
                       f"{(proc.stderr or proc.stdout).strip()}")


# ----------------------------------------------------------------------------- the supervisor

_ERROR_CLASSES = (ssh.SSHError, ssh.HostKeyError, ssh.SSHAuthError, ssh.SSHConnectError, tunnel.ForwardingError,
                  nbd.NBDExportError, SourceError, V2VError)
_ERRORS = {cls.__name__: cls for cls in _ERROR_CLASSES}


def _start_supervisor(options: PrepareOptions, settings: P2VSettings, facts: HardwareFacts, selection: Selection,
                      target: ssh.SshTarget, fingerprint: str, path: str) -> dict[str, Any]:
    """Double-fork the supervisor and wait for its report: the state, or the error that stopped it."""
    ssh.require_paramiko()
    os.makedirs(options.state_dir, mode=0o700, exist_ok=True)
    read_fd, write_fd = os.pipe()
    first = os.fork()
    if first == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read_fd)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            _detach(write_fd, options.state_dir)
            Supervisor(options, settings, facts, selection, target, fingerprint, path, write_fd).run()
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    os.waitpid(first, 0)
    chunks = []
    deadline = time.monotonic() + _REPORT_TIMEOUT + options.connect_timeout
    try:
        while time.monotonic() < deadline:
            readable = select.select([read_fd], [], [], max(0.1, deadline - time.monotonic()))[0]
            if not readable:
                continue
            data = os.read(read_fd, 65536)
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(read_fd)
    lines = [json.loads(line) for line in b"".join(chunks).decode().splitlines() if line.strip()]
    report = next((line for line in lines if "ok" in line), None)
    pid = next((line["pid"] for line in lines if "pid" in line), None)
    if report is None:
        if pid:
            _stop_pid(int(pid))
        raise V2VError("the P2V supervisor stopped without a report", hint=f"See the logs in {options.state_dir}")
    if not report["ok"]:
        if pid:
            _wait_gone(int(pid))
        cls = _ERRORS.get(report.get("error_class", ""), V2VError)
        error = cls(report["error"])
        raise error
    return report["state"]


def _wait_gone(pid: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and nbd.process_alive(pid):
        time.sleep(0.05)


def _detach(keep_fd: int, state_dir: str) -> None:
    """Become a daemon: stdio to /dev/null and the supervisor log, no other inherited descriptors."""
    os.chdir("/")
    os.umask(0o077)
    devnull = os.open(os.devnull, os.O_RDWR)
    log = os.open(os.path.join(state_dir, "supervisor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(log, 2)
    os.close(devnull)
    os.close(log)
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, 65536)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115


def _remote_dir_name() -> str:
    alphabet = string.ascii_lowercase + string.digits
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    return f"{REMOTE_DIR_PREFIX}{stamp}-{''.join(secrets.choice(alphabet) for _index in range(8))}"


def hardware_logs() -> dict[str, str]:
    """The outputs of dmesg, lscpu, lspci, lsscsi and lsusb that exist here (others are skipped)."""
    logs = {}
    for name, argv in HARDWARE_LOGS.items():
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0 and proc.stdout:
            logs[name] = proc.stdout
    return logs


class Supervisor:
    """The detached process that owns the SSH connection and the NBD servers of one session."""

    def __init__(self, options: PrepareOptions, settings: P2VSettings, facts: HardwareFacts, selection: Selection,
                 target: ssh.SshTarget, fingerprint: str, path: str, report_fd: int) -> None:
        self.options = options
        self.settings = settings
        self.facts = facts
        self.selection = selection
        self.target = target
        self.fingerprint = fingerprint
        self.path = path
        self.report_fd: int | None = report_fd
        self.transport: Any = None
        self.exports: list[nbd.NBDExport] = []
        self.forwards: dict[int, int] = {}  # server port -> local NBD port
        self.state: dict[str, Any] = {}
        self.stop = threading.Event()
        self.outcome = "stopped"

    def log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        sys.stderr.write(f"{stamp} [{os.getpid()}] {message}\n")
        sys.stderr.flush()

    def _send(self, data: dict[str, Any]) -> None:
        if self.report_fd is not None:
            os.write(self.report_fd, (json.dumps(data) + "\n").encode())

    def _finish_report(self) -> None:
        if self.report_fd is not None:
            os.close(self.report_fd)
            self.report_fd = None

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop.set())
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self._send({"pid": os.getpid()})
        try:
            self._start()
        except BaseException as exc:
            self.log(f"start failed: {exc}")
            self._cleanup()
            message = str(exc) if isinstance(exc, V2VError) else f"{type(exc).__name__}: {exc}"
            self._send({"ok": False, "error": message, "error_class": type(exc).__name__})
            self._finish_report()
            return
        self._send({"ok": True, "state": self.state})
        self._finish_report()
        try:
            self._serve()
        finally:
            self._cleanup()
            self._record_end()

    def _handler(self, channel: Any, origin: Any, server: Any) -> None:
        local = self.forwards.get(int(server[1]))
        if local is None:
            channel.close()
            return

        def connect_and_pump() -> None:
            try:
                sock = socket.create_connection(("127.0.0.1", local), timeout=10)
            except OSError as exc:
                self.log(f"forward {server[1]} -> 127.0.0.1:{local}: {exc}")
                channel.close()
                return
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tunnel.pump(channel, sock)

        threading.Thread(target=connect_and_pump, daemon=True, name=f"p2v-forward-{server[1]}").start()

    def _start(self) -> None:
        where = self.target.where
        self.transport, host_key = ssh.connect(self.target)
        self.log(f"connected to {where} as {self.target.user}, host key {host_key}")
        log_path = os.path.join(self.options.state_dir, "nbd.log")
        for device, fmt, _size in self.selection.disks:
            self.exports.append(nbd.start_export(device, fmt, log_path=log_path, server=self.options.nbd_server,
                                                 rate=self.options.nbd_rate))
        server_ports = []
        for export in self.exports:
            port = tunnel.request_forward(self.transport, self._handler, where)
            self.forwards[port] = export.port
            server_ports.append(port)
            self.log(f"forwarding {where} 127.0.0.1:{port} -> 127.0.0.1:{export.port} ({export.device})")
        machine = describe_machine(self.settings, self.facts, self.selection, server_ports)
        physical_xml = build_physical_xml(machine)
        remote_dir = self._upload(machine.name, physical_xml)
        self.state = {
            "version": STATE_VERSION, "state": "active", "handle": self.path, "fingerprint": self.fingerprint,
            "supervisor_pid": os.getpid(), "supervisor_started": _start_time(os.getpid()),
            "nbd_pids": [e.pid for e in self.exports], "server": where, "name": machine.name,
            "remote_dir": remote_dir, "host_key_fingerprint": host_key, "physical_xml": physical_xml,
            "ports": [{"device": e.device, "nbd_server": e.server, "local_port": e.port, "remote_port": p}
                      for e, p in strict_zip(self.exports, server_ports)],
            "facts": self.facts.to_dict(), "settings": self.settings.given(),
            "conversion_settings": conversion_settings(self.settings), "started": time.time(),
        }
        write_state(self.path, self.state)

    def _upload(self, name: str, physical_xml: str) -> str:
        sftp = self.transport.open_sftp_client()
        try:
            for _attempt in range(5):
                remote_dir = _remote_dir_name()
                try:
                    sftp.mkdir(remote_dir, 0o700)
                    break
                except OSError:
                    continue
            else:
                raise V2VError("cannot create a session directory under /tmp on the conversion server")
            files = {"physical.xml": physical_xml, "name": name + "\n",
                     "time": datetime.datetime.now(datetime.timezone.utc).isoformat() + "\n",
                     "p2v-version": P2V_VERSION + "\n",
                     "hardware.json": json.dumps(self.facts.to_dict(), indent=1) + "\n",
                     "conversion.json": json.dumps(conversion_settings(self.settings), indent=1) + "\n"}
            files.update(hardware_logs())
            for file_name, text in files.items():
                with sftp.open(f"{remote_dir}/{file_name}", "w") as handle:
                    handle.write(text.encode())
            return remote_dir
        finally:
            sftp.close()

    def _remote_status(self) -> str | None:
        try:
            sftp = self.transport.open_sftp_client()
            try:
                with sftp.open(f"{self.state['remote_dir']}/status", "r") as handle:
                    return str(json.loads(handle.read().decode()).get("state"))
            finally:
                sftp.close()
        except (OSError, ValueError, EOFError, ssh.paramiko.SSHException):
            return None

    def _serve(self) -> None:
        keepalive = tunnel.Keepalive(self.transport, self.options.keepalive_interval,
                                     self.options.keepalive_count_max)
        keepalive.start()
        while not self.stop.wait(self.options.status_poll_interval):
            if keepalive.lost.is_set() or not self.transport.is_active():
                self.outcome = "disconnected"
                self.log("the SSH connection to the conversion server was lost")
                break
            dead = [e for e in self.exports if not e.alive()]
            if dead:
                self.outcome = "failed"
                self.log(f"the NBD server of {dead[0].device} exited")
                break
            status = self._remote_status()
            if status in ("done", "failed"):
                self.outcome = status
                self.log(f"the conversion on the server is {status}")
                break
        keepalive.stop.set()
        hook = {"done": self.settings.post, "failed": self.settings.fail,
                "disconnected": self.settings.fail}.get(self.outcome)
        self._stop_tunnels()
        if hook:
            try:
                _run_hook("post" if self.outcome == "done" else "fail", hook)
            except V2VError as exc:
                self.log(str(exc))

    def _stop_tunnels(self) -> None:
        if self.transport is not None:
            for port in list(self.forwards):
                with contextlib.suppress(Exception):
                    self.transport.cancel_port_forward("127.0.0.1", port)
            self.transport.close()
        for export in self.exports:
            export.stop()

    def _cleanup(self) -> None:
        self._stop_tunnels()

    def _record_end(self) -> None:
        current = read_state(self.path)
        if current is not None and current.get("supervisor_pid") == os.getpid():
            current.update(state=self.outcome, ended=time.time())
            write_state(self.path, current)


def options_from_dict(data: dict[str, Any]) -> PrepareOptions:
    """For tests and tools: PrepareOptions from plain values (settings as a dict)."""
    values = dict(data)
    values["settings"] = P2VSettings(**values.get("settings", {}))
    return PrepareOptions(**values)


# ----------------------------------------------------------------------------- the module's edge

_SETTING_PARAMS = {"server": "server", "port": "port", "username": "username", "password": "password",
                   "identity": "identity", "sudo": "sudo", "name": "name", "vcpus": "vcpus",
                   "memory_mb": "memory_mb", "disks": "disks", "removable": "removable",
                   "interfaces": "interfaces", "networks": "network_map", "output": "output",
                   "output_allocation": "output_allocation", "output_connection": "output_connection",
                   "output_format": "output_format", "output_storage": "output_storage", "pre": "pre",
                   "post": "post", "fail": "fail"}


def options_from_params(params: dict[str, Any]) -> PrepareOptions:
    """PrepareOptions from prepare_p2v_host's parameters."""
    given: dict[str, Any] = {field_name: params.get(param) for param, field_name in _SETTING_PARAMS.items()
                             if params.get(param) not in (None, {})}
    settings = P2VSettings(**given)
    return PrepareOptions(
        state=params.get("state") or "present", settings=settings, cmdline=params.get("cmdline"),
        use_kernel_cmdline=bool(params.get("use_kernel_cmdline")), private_key=params.get("private_key"),
        private_key_passphrase=params.get("private_key_passphrase"),
        host_key_fingerprint=list(params.get("host_key_fingerprint") or []), known_hosts=params.get("known_hosts"),
        test_disk=params.get("test_disk"), test_disk_format=params.get("test_disk_format"),
        nbd_server=params.get("nbd_server") or "auto", nbd_rate=params.get("nbd_rate"),
        connect_timeout=float(params.get("connect_timeout") or 30),
        keepalive_interval=float(params.get("keepalive_interval") or 30),
        keepalive_count_max=int(params.get("keepalive_count_max") or 4),
        state_dir=params.get("state_dir") or "/run/kvmigrate-p2v")
