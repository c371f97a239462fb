# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SSH control connection from the physical machine to the conversion server.

paramiko, opened by the physical machine (the server only needs its SSH port
reachable). The server's host key is checked BEFORE authenticating, so a
password is never sent to an impostor: it must match a pinned ``SHA256:``
fingerprint or a known_hosts entry; anything else is refused with the
fingerprint in the message. Then one reverse port-forward per disk: the
server's loopback port N leads to this machine's NBD export. Keepalives with
a reply are sent every ``keepalive_interval`` seconds; after
``keepalive_count_max`` unanswered ones the connection counts as lost.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import select
import socket
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import V2VError

try:
    import paramiko
except ImportError:
    paramiko = None
    PARAMIKO_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    PARAMIKO_IMPORT_ERROR = None

# Large windows keep an NBD stream moving on links with latency.
_WINDOW = 16 * 1024 * 1024
_PUMP_BUFFER = 256 * 1024


class HostKeyError(V2VError):
    """The conversion server's SSH host key is unknown or does not match."""


class SSHAuthError(V2VError):
    """The conversion server refused the credentials."""


class SSHConnectError(V2VError):
    """The conversion server could not be reached over SSH."""


class ForwardingError(V2VError):
    """The conversion server refused a reverse port-forward."""


@dataclass
class SSHTarget:
    server: str
    port: int = 22
    username: str = "root"
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    private_key_passphrase: str | None = field(default=None, repr=False)
    host_key_fingerprints: list[str] = field(default_factory=list)
    known_hosts: str | None = None
    connect_timeout: float = 30.0
    keepalive_interval: float = 30.0
    keepalive_count_max: int = 4


def require_paramiko() -> None:
    if paramiko is None:
        raise V2VError("the Python library paramiko is not installed",
                       hint="Install python3-paramiko (or paramiko from PyPI) on the physical machine's live system")


def key_fingerprint(key: Any) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def normalize_fingerprint(text: str) -> str:
    text = text.strip()
    if not text.startswith("SHA256:"):
        raise HostKeyError(f"host key fingerprint {text!r} is not a SHA256:... fingerprint",
                           hint="Give it as 'ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub' prints it")
    return "SHA256:" + text[len("SHA256:"):].rstrip("=")


def _known_hosts_names(server: str, port: int) -> list[str]:
    return [server] if port == 22 else [f"[{server}]:{port}"]


def verify_host_key(target: SSHTarget, key: Any) -> str:
    """Accept the server's key only if pinned or in known_hosts; return its fingerprint."""
    fingerprint = key_fingerprint(key)
    pinned = [normalize_fingerprint(f) for f in target.host_key_fingerprints]
    if fingerprint in pinned:
        return fingerprint
    known_keys = None
    if target.known_hosts:
        try:
            host_keys = paramiko.HostKeys(os.path.expanduser(target.known_hosts))
        except OSError as exc:
            raise HostKeyError(f"cannot read the known_hosts file: {exc.strerror}", subject=target.known_hosts) from exc
        for name in _known_hosts_names(target.server, target.port):
            entry = host_keys.lookup(name)
            if entry is not None:
                known_keys = entry
                stored = entry.get(key.get_name())
                if stored is not None and stored.asbytes() == key.asbytes():
                    return fingerprint
    where = []
    if pinned:
        where.append("the pinned fingerprint(s)")
    if target.known_hosts:
        where.append(f"known_hosts {target.known_hosts}")
    if known_keys is not None or pinned:
        raise HostKeyError(
            f"the SSH host key of {target.server}:{target.port} ({key.get_name()} {fingerprint}) does NOT match "
            f"{' or '.join(where)}; refusing to connect (possible man-in-the-middle)",
            hint="If the server's key was changed on purpose, update host_key_fingerprint or known_hosts")
    raise HostKeyError(
        f"the SSH host key of {target.server}:{target.port} is unknown ({key.get_name()} {fingerprint}); "
        "refusing to connect",
        hint=f"Check it on the conversion server (ssh-keygen -lf /etc/ssh/ssh_host_{key.get_name().split('-')[-1]}"
             f"_key.pub) and pin it with host_key_fingerprint: {fingerprint}, or add the server to a known_hosts file")


def _load_private_key(text: str, passphrase: str | None) -> Any:
    errors = []
    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException as exc:
            raise SSHAuthError("the private key is encrypted and no passphrase was given",
                               hint="Set private_key_passphrase") from exc
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(type(exc).__name__)
    raise SSHAuthError("the private key could not be read (not an Ed25519, ECDSA or RSA key in OpenSSH or PEM form, "
                       "or a wrong passphrase)")


def connect(target: SSHTarget) -> tuple[Any, str]:
    """Open, verify and authenticate the SSH transport; return it and the verified fingerprint."""
    require_paramiko()
    if not target.password and not target.private_key:
        raise SSHAuthError("no SSH credentials: give a password or a private key (identity)")
    where = f"{target.server}:{target.port}"
    try:
        sock = socket.create_connection((target.server, target.port), timeout=target.connect_timeout)
    except OSError as exc:
        raise SSHConnectError(f"cannot reach the conversion server {where}: {exc.strerror or exc}",
                              hint="Check the server name, its SSH port and the network of the physical machine") \
            from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock, default_window_size=_WINDOW)
    try:
        try:
            transport.start_client(timeout=target.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHConnectError(f"SSH negotiation with {where} failed: {exc}",
                                  hint="Check that an SSH server listens on that port") from exc
        fingerprint = verify_host_key(target, transport.get_remote_server_key())
        try:
            if target.private_key:
                transport.auth_publickey(target.username, _load_private_key(target.private_key,
                                                                            target.private_key_passphrase))
            else:
                transport.auth_password(target.username, target.password)
        except paramiko.AuthenticationException as exc:
            method = "private key" if target.private_key else "password"
            raise SSHAuthError(f"the conversion server {where} refused the {method} of user {target.username!r}",
                               hint="Check the user name and the password or key") from exc
        except paramiko.SSHException as exc:
            raise SSHAuthError(f"authentication with {where} failed: {exc}") from exc
        if not transport.is_authenticated():
            raise SSHAuthError(f"the conversion server {where} did not accept the credentials of {target.username!r}")
    except BaseException:
        transport.close()
        raise
    return transport, fingerprint


def request_forward(transport: Any, handler: Callable[..., None], where: str) -> int:
    """A reverse forward from the server's 127.0.0.1:<free port>; return that port."""
    try:
        port = transport.request_port_forward("127.0.0.1", 0, handler=handler)
    except paramiko.SSHException as exc:
        raise ForwardingError(
            f"the conversion server {where} refused a reverse port-forward ({exc})",
            hint="Allow TCP forwarding for this user in the server's sshd_config: AllowTcpForwarding yes "
                 "(or 'remote'), and check PermitListen") from exc
    if not port:
        raise ForwardingError(f"the conversion server {where} did not assign a port for the reverse forward",
                              hint="Set AllowTcpForwarding yes in the server's sshd_config")
    return int(port)


def pump(channel: Any, sock: socket.socket) -> None:
    """Copy bytes both ways between an SSH channel and a local socket until either side closes."""
    try:
        while True:
            readable = select.select([channel, sock], [], [], 60.0)[0]
            if channel in readable:
                data = channel.recv(_PUMP_BUFFER)
                if not data:
                    break
                sock.sendall(data)
            if sock in readable:
                data = sock.recv(_PUMP_BUFFER)
                if not data:
                    break
                channel.sendall(data)
            if channel.closed or (channel.eof_received and not channel.recv_ready()):
                break
    except (OSError, EOFError, paramiko.SSHException):
        pass
    finally:
        sock.close()
        channel.close()


class Keepalive(threading.Thread):
    """Sends keepalives that need a reply; marks the connection lost after too many go unanswered."""

    def __init__(self, transport: Any, interval: float, count_max: int) -> None:
        super().__init__(daemon=True, name="p2v-keepalive")
        self.transport = transport
        self.interval = interval
        self.count_max = count_max
        self.lost = threading.Event()
        self.stop = threading.Event()

    def _ping(self, answered: threading.Event) -> None:
        try:
            self.transport.global_request("keepalive@openssh.com", wait=True)
        except (paramiko.SSHException, OSError, EOFError):
            return
        answered.set()

    def run(self) -> None:
        missed = 0
        while not self.stop.wait(self.interval):
            if not self.transport.is_active():
                self.lost.set()
                return
            answered = threading.Event()
            threading.Thread(target=self._ping, args=(answered,), daemon=True).start()
            if answered.wait(self.interval):
                missed = 0
                continue
            missed += 1
            if missed >= self.count_max:
                self.lost.set()
                self.transport.close()
                return
