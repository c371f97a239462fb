# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one SSH layer: host-key policy, key loading, sessions, the nbdkit-ssh disk server.

Used by the inputs that read over SSH (``vmx`` in an ESXi datastore, disks
of ``libvirt`` domains on ``+ssh`` URIs) and by P2V's tunnel from the
physical machine to the conversion server.

- Host keys (:func:`verify_host_key`): the server's key is checked right after
  the key exchange, BEFORE any credential is sent. It is accepted when it
  matches one of the pinned fingerprints (``host_key_fingerprint``, each
  ``SHA256:...`` as ``ssh-keygen -lf`` prints it) or the host's entry in the
  ``known_hosts`` file; anything else is refused with the server's
  fingerprint in the message. Nothing is ever auto-accepted, and the
  known_hosts file is only read, never written.
- Keys (:func:`load_private_key`): Ed25519, ECDSA or RSA, OpenSSH or PEM
  form, given as text or as the path of a key file; kept in memory.
- Sessions (:func:`connect`, :class:`SshSession`): paramiko, one transport
  with large windows (NBD streams run through it), SFTP on demand.
- :class:`SshDiskServer`: one remote file served read-only over NBD by
  ``nbdkit -r ssh`` on a private unix socket, for as long as its context
  lasts. ``password`` reaches nbdkit through an inherited pipe; a key given
  as text is loaded into a private ``ssh-agent`` (``ssh-add -`` from a pipe),
  so secrets never touch the disk or a command line.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import SourceError, ToolError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.process import run_tool

try:
    import paramiko
except ImportError:  # reported when an SSH connection is needed
    paramiko = None

CONNECT_TIMEOUT = 30
# Large windows keep an NBD stream moving on links with latency.
_WINDOW = 16 * 1024 * 1024
_MAX_TEXT = 1024 * 1024


class SSHError(SourceError):
    """An SSH connection could not be made (the base of the errors below)."""


class HostKeyError(SSHError):
    """The SSH server's host key is unknown or does not match."""


class SSHAuthError(SSHError):
    """The SSH server refused the credentials, or they could not be used."""


class SSHConnectError(SSHError):
    """The SSH server could not be reached, or the SSH negotiation failed."""


def require_paramiko() -> None:
    if paramiko is None:
        raise SSHError("the Python library paramiko is not installed; it is needed for SSH connections",
                       hint="Install python3-paramiko (or paramiko from PyPI) on this machine")


def fingerprint(key: Any) -> str:
    """A public key's fingerprint as ``ssh-keygen -l`` prints it: ``SHA256:<base64 without padding>``."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    """The host as known_hosts files name it (``[host]:port`` off port 22)."""
    return host if port == 22 else f"[{host}]:{port}"


@dataclass(frozen=True)
class SshLocation:
    """Where a file is on an SSH server."""

    user: str
    host: str
    port: int
    path: str

    @property
    def known_hosts_name(self) -> str:
        return known_hosts_name(self.host, self.port)

    def with_path(self, path: str) -> SshLocation:
        return SshLocation(user=self.user, host=self.host, port=self.port, path=path)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port != 22 else ""
        return f"ssh://{quote(self.user)}@{host}{port}{quote(self.path)}"


@dataclass
class SshCredentials:
    """How to authenticate. Secrets are kept out of ``repr``.

    ``private_key`` is the key's text or the path of a key file on this machine.
    """

    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    private_key_passphrase: str | None = field(default=None, repr=False)

    @property
    def key_is_text(self) -> bool:
        return bool(self.private_key) and "PRIVATE KEY-----" in (self.private_key or "")


@dataclass
class SshTarget:
    """One SSH server: where it is, how it is trusted and how we log in.

    ``server_name`` and ``option_prefix`` only shape messages: how the server
    is called ("the conversion server") and how the user spells the options
    (``source.`` for the source options of inspect_guest/convert_guest).
    ``passphrase_option`` names the option holding a key's passphrase, where
    the module has one.
    """

    host: str
    port: int = 22
    user: str = "root"
    credentials: SshCredentials = field(default_factory=SshCredentials, repr=False)
    host_key_fingerprint: list[str] = field(default_factory=list)
    known_hosts: str | None = None
    connect_timeout: float = CONNECT_TIMEOUT
    server_name: str = "the SSH server"
    option_prefix: str = ""
    passphrase_option: str | None = None

    @property
    def known_hosts_name(self) -> str:
        return known_hosts_name(self.host, self.port)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def location(self, path: str) -> SshLocation:
        return SshLocation(user=self.user, host=self.host, port=self.port, path=path)

    def option(self, name: str) -> str:
        return f"{self.option_prefix}{name}"


# ----------------------------------------------------------------------------- host keys

def normalize_fingerprint(text: str, option: str = "host_key_fingerprint") -> str:
    """A pinned fingerprint in the form :func:`fingerprint` returns (trailing ``=`` padding dropped)."""
    text = text.strip()
    if not text.startswith("SHA256:"):
        raise HostKeyError(f"{option} {text!r} is not a SHA256:... fingerprint",
                           hint="Give it as 'ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub' prints it")
    return "SHA256:" + text[len("SHA256:"):].rstrip("=")


def _key_file_kind(key: Any) -> str:
    name = key.get_name()
    if "ed25519" in name:
        return "ed25519"
    if "ecdsa" in name:
        return "ecdsa"
    return "rsa"


def _read_known_hosts(target: SshTarget) -> Any:
    path = os.path.expanduser(target.known_hosts or "")
    try:
        # Read-only: HostKeys never writes back (SSHClient.load_host_keys would).
        return paramiko.HostKeys(path)
    except OSError as exc:
        raise HostKeyError(f"cannot read the known_hosts file ({target.option('known_hosts')}): "
                           f"{exc.strerror or exc}", subject=path,
                           hint="Check the path and that this user may read it") from exc


def verify_host_key(target: SshTarget, key: Any) -> str:
    """The host-key policy: accept ``key`` only if pinned or in known_hosts; return its fingerprint."""
    require_paramiko()
    shown = fingerprint(key)
    pin_option = target.option("host_key_fingerprint")
    pinned = [normalize_fingerprint(f, pin_option) for f in target.host_key_fingerprint]
    if shown in pinned:
        return shown
    host_known = False
    if target.known_hosts:
        entry = _read_known_hosts(target).lookup(target.known_hosts_name)
        if entry is not None:
            host_known = True
            stored = entry.get(key.get_name())
            if stored is not None and stored.asbytes() == key.asbytes():
                return shown
    presented = f"{key.get_name()} {shown}"
    if host_known or pinned:
        checked = (["the pinned fingerprint(s)"] if pinned else []) + (
            [f"known_hosts {target.known_hosts}"] if target.known_hosts else [])
        raise HostKeyError(
            f"the SSH host key of {target.where} ({presented}) does NOT match {' or '.join(checked)}; "
            "refusing to connect (possible man-in-the-middle)",
            hint=f"If the server's key was changed on purpose, update {pin_option} or "
                 f"{target.option('known_hosts')}")
    raise HostKeyError(
        f"the SSH host key of {target.where} is unknown ({presented}); refusing to connect",
        hint=f"Check it on {target.server_name} ('ssh-keygen -lf /etc/ssh/ssh_host_{_key_file_kind(key)}_key.pub') "
             f"and pin it with {pin_option}: {shown}, or add the server's key to the file given as "
             f"{target.option('known_hosts')}")


# ----------------------------------------------------------------------------- keys

def _private_key_text(target: SshTarget) -> str:
    credentials = target.credentials
    value = credentials.private_key or ""
    if credentials.key_is_text:
        return value
    if os.path.isfile(value):
        try:
            with open(value, encoding="utf-8") as handle:
                return handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise SSHAuthError(f"cannot read the key file {value!r} ({target.option('private_key')}): {exc}") \
                from None
    raise SSHAuthError(f"{target.option('private_key')} is neither key text nor an existing key file",
                       hint="Give the key's text, or the path of a key file on this machine")


def load_private_key(target: SshTarget) -> Any:
    """The target's private key (text or key file), for paramiko; held in memory only."""
    require_paramiko()
    text = _private_key_text(target)
    passphrase = target.credentials.private_key_passphrase
    option = target.option("private_key")
    for kind in ("Ed25519Key", "ECDSAKey", "RSAKey"):
        cls = getattr(paramiko, kind, None)
        if cls is None:
            continue
        try:
            return cls.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException:
            hint = (f"Set {target.option(target.passphrase_option)}" if target.passphrase_option
                    else "Give an unencrypted key")
            raise SSHAuthError(f"the private key ({option}) is encrypted and no passphrase was given",
                               hint=hint) from None
        except (paramiko.SSHException, ValueError):
            continue
    raise SSHAuthError(f"the private key ({option}) could not be read: not an Ed25519, ECDSA or RSA key in OpenSSH "
                       "or PEM form" + (", or a wrong passphrase" if passphrase else ""),
                       hint="Give an unencrypted OpenSSH/PEM private key" if not target.passphrase_option else None)


# ----------------------------------------------------------------------------- sessions

def connect(target: SshTarget) -> tuple[Any, str]:
    """Open, verify and authenticate a paramiko transport; return it and the verified host key fingerprint.

    The host key is checked before any credential is sent.
    """
    require_paramiko()
    credentials = target.credentials
    if credentials.password is None and not credentials.private_key:
        raise SSHAuthError(f"no SSH credentials for {target.server_name} {target.where}",
                           hint=f"Set {target.option('password')} or {target.option('private_key')}")
    pkey = load_private_key(target) if credentials.private_key else None
    where = target.where
    try:
        sock = socket.create_connection((target.host, target.port), timeout=target.connect_timeout)
    except OSError as exc:
        raise SSHConnectError(f"cannot reach {target.server_name} {where}: {exc.strerror or exc}",
                              hint="Check the host name, the SSH port, that sshd runs there and the network "
                                   "in between") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock, default_window_size=_WINDOW)
    transport.banner_timeout = target.connect_timeout
    transport.auth_timeout = target.connect_timeout
    try:
        try:
            transport.start_client(timeout=target.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHConnectError(f"SSH negotiation with {target.server_name} {where} failed: {exc}",
                                  hint="Check that an SSH server listens on that port") from None
        host_key = verify_host_key(target, transport.get_remote_server_key())
        method = "private key" if pkey is not None else "password"
        refused = (f"SSH authentication as {target.user}@{where} failed: {target.server_name} refused the {method} "
                   f"of user {target.user!r}")
        hint = f"Check {target.option('password')} or {target.option('private_key')} and the user name"
        try:
            if pkey is not None:
                transport.auth_publickey(target.user, pkey)
            else:
                transport.auth_password(target.user, credentials.password or "")
        except paramiko.AuthenticationException:
            raise SSHAuthError(refused, hint=hint) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHAuthError(f"SSH authentication as {target.user}@{where} failed: {exc}", hint=hint) from None
        if not transport.is_authenticated():
            raise SSHAuthError(refused, hint=hint)
    except BaseException:
        transport.close()
        raise
    return transport, host_key


class SshSession:
    """A verified, authenticated SSH connection with SFTP on demand (a context manager)."""

    def __init__(self, target: SshTarget) -> None:
        require_paramiko()
        self.target = target
        self.transport: Any = None
        self.host_key_fingerprint: str | None = None
        self._sftp: Any = None

    def __enter__(self) -> SshSession:
        self.transport, self.host_key_fingerprint = connect(self.target)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
            self._sftp = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    @property
    def sftp(self) -> Any:
        if self._sftp is None:
            try:
                self._sftp = self.transport.open_sftp_client()
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise SSHError(f"{self.target.server_name} {self.target.where} refused SFTP: {exc}",
                               hint="Enable the SFTP subsystem in its sshd_config") from None
        return self._sftp

    def read(self, path: str, *, limit: int = _MAX_TEXT, missing_ok: bool = False) -> bytes | None:
        """A small remote file's bytes (``None`` if absent and ``missing_ok``)."""
        url = self.target.location(path).url
        try:
            info = self.sftp.stat(path)
        except OSError as exc:
            if missing_ok:
                return None
            raise SourceError(f"cannot read {path!r} on {self.target.server_name}: {exc.strerror or exc}",
                              subject=url, hint=f"Check the path in {self.target.option('path')}") from None
        if info.st_mode is not None and stat.S_ISDIR(info.st_mode):
            raise SourceError(f"{path!r} on {self.target.server_name} is a directory", subject=url)
        with self.sftp.open(path, "rb") as handle:
            return handle.read(min(info.st_size or limit, limit))

    def regular_file_size(self, path: str) -> int | None:
        """The size of a regular remote file; ``None`` if it is missing or something else."""
        try:
            info = self.sftp.stat(path)
        except OSError:
            return None
        if info.st_mode is None or not stat.S_ISREG(info.st_mode):
            return None
        return info.st_size

    def size(self, path: str) -> int | None:
        try:
            return self.sftp.stat(path).st_size
        except OSError:
            return None

    def known_hosts_line(self) -> str:
        """The verified server key as one known_hosts line (for tools that verify it again, like nbdkit)."""
        key = self.transport.get_remote_server_key()
        return f"{self.target.known_hosts_name} {key.get_name()} {key.get_base64()}\n"


# ----------------------------------------------------------------------------- the nbdkit-ssh disk server

def _wait_for_socket(path: str, proc: subprocess.Popen, what: str, log: str | None = None,
                     timeout: float = 30.0, pidfile: str | None = None) -> None:
    """Wait until ``proc`` listens on ``path`` (or, quietly, until it has written ``pidfile``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            detail = _read_log(log) if log else ""
            raise SourceError(f"{what} exited with code {proc.returncode}: {detail or '(no error output)'}")
        if pidfile is not None:
            # nbdkit writes its pidfile once it listens; a probe connection would only log a broken handshake.
            if os.path.exists(pidfile) and os.path.getsize(pidfile) > 0:
                return
        elif os.path.exists(path):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(path)
                    return
                except OSError:
                    pass
        time.sleep(0.05)
    raise SourceError(f"{what} did not start within {timeout:.0f} seconds")


def _read_log(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()[-2000:].strip()
    except OSError:
        return ""


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class SshDiskServer:
    """Serves one remote file read-only over NBD with ``nbdkit -r ssh`` while :meth:`serve` lasts.

    ``known_hosts_line`` is the host key an :class:`SshSession` verified:
    nbdkit checks the server against it again.
    """

    location: SshLocation
    credentials: SshCredentials = field(repr=False)
    known_hosts_line: str

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """A context whose value is the NBD URI the file can be read from while it lasts."""
        # Its own short-named 0700 directory: unix socket paths are limited to 107 bytes.
        run_dir = tempfile.mkdtemp(prefix="kvmigrate-ssh-")
        processes: list[subprocess.Popen] = []
        try:
            known_hosts = os.path.join(run_dir, "known_hosts")
            with open(known_hosts, "w", encoding="utf-8") as handle:
                handle.write(self.known_hosts_line)
            sock = os.path.join(run_dir, "nbd.sock")
            log = os.path.join(run_dir, "nbdkit.log")
            env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
            pidfile = os.path.join(run_dir, "nbdkit.pid")
            argv = ["nbdkit", "-r", "-f", "--exit-with-parent", "-U", sock, "-P", pidfile, "ssh",
                    f"host={self.location.host}", f"port={self.location.port}", f"user={self.location.user}",
                    f"known-hosts={known_hosts}", "verify-remote-host=true", "config=",
                    f"timeout={CONNECT_TIMEOUT}"]
            creds = self.credentials
            if creds.private_key and creds.key_is_text:
                env["SSH_AUTH_SOCK"] = self._start_agent(run_dir, processes)
            elif creds.private_key:
                argv.append(f"identity={os.path.abspath(creds.private_key)}")
            read_fd = write_fd = -1
            if creds.password is not None:
                read_fd, write_fd = os.pipe()
                argv.append(f"password=-{read_fd}")
            argv.append(f"path={self.location.path}")
            with open(log, "w", encoding="utf-8") as log_handle:
                try:
                    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=log_handle, env=env,
                                            pass_fds=(read_fd,) if read_fd >= 0 else ())
                except FileNotFoundError as exc:
                    raise SourceError("the tool 'nbdkit' is not installed",
                                      hint="Install the packages 'nbdkit' (with its ssh plugin) on the "
                                           "conversion host") from exc
                finally:
                    if read_fd >= 0:
                        os.close(read_fd)
                processes.append(proc)
                if write_fd >= 0:
                    with os.fdopen(write_fd, "w", encoding="utf-8") as secret:
                        secret.write(creds.password or "")
            _wait_for_socket(sock, proc, "nbdkit (ssh plugin)", log, pidfile=pidfile)
            try:
                yield f"nbd+unix:///?socket={sock}"
            except (SourceError, ToolError) as exc:
                # Reading the disk failed: nbdkit's side of the story is in its log.
                detail = _read_log(log)
                exc.message = f"reading it through nbdkit's ssh plugin failed: {exc.message}"
                if detail:
                    exc.message += f" (nbdkit: {detail})"
                exc.subject = self.location.url
                raise
        finally:
            for proc in reversed(processes):
                _stop(proc)
            shutil.rmtree(run_dir, ignore_errors=True)

    def _start_agent(self, run_dir: str, processes: list[subprocess.Popen]) -> str:
        """A private ssh-agent holding the key (fed through a pipe: the key never touches the disk)."""
        agent_sock = os.path.join(run_dir, "agent.sock")
        try:
            agent = subprocess.Popen(["ssh-agent", "-D", "-a", agent_sock], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except FileNotFoundError as exc:
            raise SourceError("ssh-agent is needed to use a private key given as text",
                              hint="Install openssh-client, or give the private key as a key file path") from exc
        processes.append(agent)
        _wait_for_socket(agent_sock, agent, "ssh-agent")
        key = self.credentials.private_key or ""
        run_tool(["ssh-add", "-q", "-"], env={"SSH_AUTH_SOCK": agent_sock, "PATH": os.environ.get("PATH", "")},
                 input_text=key if key.endswith("\n") else key + "\n",
                 hint="Give an unencrypted private key")
        return agent_sock
