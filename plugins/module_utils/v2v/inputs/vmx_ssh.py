# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input ``vmx`` over SSH: a .vmx in an ESXi datastore, ``ssh://root@esxi[:port]/vmfs/volumes/ds/vm/vm.vmx``.

Like virt-v2v's ``-i vmx -it ssh``:

- the .vmx, its .vmsd and the VMDK descriptors are read with SFTP
  (paramiko) and parsed by the same pure parser as local files
  (:func:`..vmx.parse_vmx`);
- the SSH server's host key is verified before any credential is sent:
  against ``ssh_host_key`` (a ``SHA256:...`` fingerprint as ``ssh-keygen -l``
  prints it) and/or ``known_hosts``. An unknown or different key is refused
  with the server's fingerprint in the message; nothing is ever auto-accepted;
- each disk must be a flat VMDK (ESXi's ``vmfs`` or ``monolithicFlat``
  descriptor with one ``-flat.vmdk`` extent in the VM's directory). Its
  extent is read as raw through ``nbdkit -r ssh`` on a private unix socket,
  started when the pipeline opens the disks and stopped when it ends
  (:class:`SshDiskServer`). Sparse, seSparse, raw device mappings and
  snapshot deltas are refused.

Secrets: ``password`` reaches nbdkit through an inherited pipe
(``password=-FD``); ``private_key`` is either the path of a key file on the
conversion host (given to nbdkit as ``identity=``) or the key's text, which
is loaded into a private ``ssh-agent`` (``ssh-add -`` from a pipe) for the
run, so it is never written to disk. Neither is logged or put in results.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import posixpath
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v import storage
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import (
    NotSupportedError,
    SourceError,
    ToolError,
    UnsafeImageError,
    V2VError,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.vmx import (
    _snapshot_error,
    count_snapshots,
    decode_vmx,
    parse_vmx,
    parse_vmx_keys,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Source
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.process import run_tool
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.vmdk import parse_descriptor

try:
    import paramiko
except ImportError:  # reported when an ssh:// source is used
    paramiko = None

_CONNECT_TIMEOUT = 30
_MAX_TEXT = 1024 * 1024
# Descriptors whose one extent is the disk's bytes, readable as raw.
_FLAT_TYPES = {"vmfs": "VMFS", "monolithicflat": "FLAT"}
_SPARSE_MAGICS = (b"KDMV", b"COWD")


@dataclass(frozen=True)
class SshLocation:
    """Where a file is on an SSH server."""

    user: str
    host: str
    port: int
    path: str

    @property
    def known_hosts_name(self) -> str:
        """The host as known_hosts files name it (``[host]:port`` off port 22)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def with_path(self, path: str) -> SshLocation:
        return SshLocation(user=self.user, host=self.host, port=self.port, path=path)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port != 22 else ""
        return f"ssh://{quote(self.user)}@{host}{port}{quote(self.path)}"


def parse_ssh_url(url: str) -> SshLocation:
    """``ssh://[user@]host[:port]/absolute/path`` (the user defaults to root, as for ESXi)."""
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname:
        raise SourceError(f"not an ssh:// URL: {url!r}", hint="Use ssh://root@esxi/vmfs/volumes/datastore/vm/vm.vmx")
    if parts.password is not None:
        raise SourceError("the ssh:// URL contains a password", hint="Put it in source.password instead")
    try:
        port = parts.port or 22
    except ValueError as exc:
        raise SourceError(f"the ssh:// URL has an invalid port: {url!r}") from exc
    path = unquote(parts.path)
    if not path.startswith("/") or path == "/":
        raise SourceError(f"the ssh:// URL needs an absolute path to the .vmx: {url!r}")
    return SshLocation(user=unquote(parts.username or "root"), host=parts.hostname, port=port, path=path)


def fingerprint(key: Any) -> str:
    """A host key's fingerprint as ``ssh-keygen -l`` prints it: ``SHA256:<base64 without padding>``."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass
class SshCredentials:
    """How to reach and trust the server. Secrets are kept out of ``repr``."""

    ssh_host_key: str | None = None
    known_hosts: str | None = None
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)

    @property
    def key_is_text(self) -> bool:
        return bool(self.private_key) and "PRIVATE KEY-----" in (self.private_key or "")


def _host_key_error(location: SshLocation, key: Any, problem: str) -> SourceError:
    shown = fingerprint(key)
    return SourceError(
        f"the SSH host key of {location.known_hosts_name} {problem}: the server presented "
        f"{key.get_name()} key {shown}; refusing to connect",
        subject=location.url,
        hint=f"If that is the server's real key (check on the console: 'ssh-keygen -lf "
             f"/etc/ssh/ssh_host_{_key_file_kind(key)}_key.pub'), pin it with source.ssh_host_key: "
             f"'{shown}', or add it to the file given as source.known_hosts")


def _key_file_kind(key: Any) -> str:
    name = key.get_name()
    if "ed25519" in name:
        return "ed25519"
    if "ecdsa" in name:
        return "ecdsa"
    return "rsa"


class _VerifyHostKey:
    """paramiko's missing-host-key policy: accept only a pinned fingerprint, never anything else."""

    def __init__(self, location: SshLocation, pinned: str | None) -> None:
        self.location = location
        self.pinned = pinned

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        if self.pinned is None:
            raise _host_key_error(self.location, key, "is unknown (not pinned and not in known_hosts)")
        if fingerprint(key) != self.pinned:
            raise _host_key_error(self.location, key, f"does not match the pinned {self.pinned}")


def _normalise_pin(pin: str | None) -> str | None:
    if pin is None:
        return None
    pin = pin.strip()
    if not pin.startswith("SHA256:"):
        raise SourceError(f"source.ssh_host_key {pin!r} is not a SHA256 fingerprint",
                          hint="Give it as 'ssh-keygen -lf <host key>.pub' prints it: SHA256:...")
    return pin.rstrip("=")


def _load_private_key(text: str) -> Any:
    for kind in ("Ed25519Key", "ECDSAKey", "RSAKey"):
        cls = getattr(paramiko, kind, None)
        if cls is None:
            continue
        try:
            return cls.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise SourceError("source.private_key is not an unencrypted OpenSSH/PEM private key (ed25519, ecdsa or rsa)",
                      hint="Give an unencrypted key, or the path of a key file on the conversion host")


class SshSession:
    """A verified, authenticated SSH connection with an SFTP channel (a context manager)."""

    def __init__(self, location: SshLocation, credentials: SshCredentials) -> None:
        if paramiko is None:
            raise SourceError("the Python package 'paramiko' is needed to read sources over SSH",
                              hint="Install paramiko on the conversion host (see requirements.txt)")
        self.location = location
        self.credentials = credentials
        self.client = paramiko.SSHClient()
        self.server_key: Any = None
        self.sftp: Any = None

    def __enter__(self) -> SshSession:
        creds = self.credentials
        pinned = _normalise_pin(creds.ssh_host_key)
        if creds.known_hosts:
            if not os.path.isfile(creds.known_hosts):
                raise SourceError(f"source.known_hosts {creds.known_hosts!r} does not exist")
            # Read-only: SSHClient.load_host_keys would write new keys back into the file.
            self.client.get_host_keys().load(creds.known_hosts)
        self.client.set_missing_host_key_policy(_VerifyHostKey(self.location, pinned))
        auth: dict[str, Any] = {"allow_agent": False, "look_for_keys": False}
        if creds.password is not None:
            auth["password"] = creds.password
        if creds.private_key:
            if creds.key_is_text:
                auth["pkey"] = _load_private_key(creds.private_key)
            elif os.path.isfile(creds.private_key):
                auth["key_filename"] = creds.private_key
            else:
                raise SourceError("source.private_key is neither key text nor an existing key file",
                                  hint="Give the key's text, or the path of a key file on the conversion host")
        if creds.password is None and not creds.private_key:
            raise SourceError("no credentials for the SSH source", subject=self.location.url,
                              hint="Set source.password or source.private_key")
        where = f"{self.location.user}@{self.location.known_hosts_name}"
        try:
            self.client.connect(self.location.host, port=self.location.port, username=self.location.user,
                                timeout=_CONNECT_TIMEOUT, banner_timeout=_CONNECT_TIMEOUT,
                                auth_timeout=_CONNECT_TIMEOUT, **auth)
        except V2VError:
            self.client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            self.client.close()
            raise _host_key_error(self.location, exc.key, "differs from the one in known_hosts") from None
        except paramiko.AuthenticationException as exc:
            self.client.close()
            raise SourceError(f"SSH authentication as {where} failed: {exc}", subject=self.location.url,
                              hint="Check source.password or source.private_key and the user in the URL") from None
        except (paramiko.SSHException, OSError) as exc:
            self.client.close()
            raise SourceError(f"cannot connect to the SSH server {where}: {exc}", subject=self.location.url,
                              hint="Check the host name, the port and that sshd runs there") from None
        transport = self.client.get_transport()
        self.server_key = transport.get_remote_server_key() if transport is not None else None
        if pinned is not None and self.server_key is not None and fingerprint(self.server_key) != pinned:
            self.client.close()
            raise _host_key_error(self.location, self.server_key, f"does not match the pinned {pinned}")
        self.sftp = self.client.open_sftp()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.sftp is not None:
            self.sftp.close()
        self.client.close()

    def read(self, path: str, *, limit: int = _MAX_TEXT, missing_ok: bool = False) -> bytes | None:
        """A small remote file's bytes (``None`` if absent and ``missing_ok``)."""
        try:
            info = self.sftp.stat(path)
        except OSError as exc:
            if missing_ok:
                return None
            raise SourceError(f"cannot read {path!r} on the SSH server: {exc.strerror or exc}",
                              subject=self.location.url, hint="Check the path in source.path") from None
        if info.st_mode is not None and stat.S_ISDIR(info.st_mode):
            raise SourceError(f"{path!r} on the SSH server is a directory", subject=self.location.url)
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
        key = self.server_key
        return f"{self.location.known_hosts_name} {key.get_name()} {key.get_base64()}\n"


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
    """Serves one remote flat extent read-only over NBD with ``nbdkit -r ssh`` (a :class:`storage.DiskServer`)."""

    location: SshLocation
    credentials: SshCredentials = field(repr=False)
    known_hosts_line: str

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
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
                    f"timeout={_CONNECT_TIMEOUT}"]
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
                              hint="Install openssh-client, or give source.private_key as a key file path") from exc
        processes.append(agent)
        _wait_for_socket(agent_sock, agent, "ssh-agent")
        key = self.credentials.private_key or ""
        run_tool(["ssh-add", "-q", "-"], env={"SSH_AUTH_SOCK": agent_sock, "PATH": os.environ.get("PATH", "")},
                 input_text=key if key.endswith("\n") else key + "\n",
                 hint="Give an unencrypted private key in source.private_key")
        return agent_sock


def _flat_extent(session: SshSession, descriptor_path: str, vm: str) -> tuple[str, int]:
    """The flat extent a disk's descriptor names, and the disk's size; anything else is refused."""
    name = posixpath.basename(descriptor_path)
    data = session.read(descriptor_path) or b""
    if data[:4] in _SPARSE_MAGICS:
        raise NotSupportedError(f"disk {name!r} of VM {vm!r} is a sparse (hosted) VMDK, which cannot be read "
                                "over SSH yet", subject=session.location.url,
                                hint="Convert it to a flat disk on the ESXi host ('vmkfstools -i in.vmdk -d thin "
                                     "out.vmdk' gives a vmfs flat disk), or copy the VM directory and use a local path")
    # Descriptors are often padded with NULs to a sector; anything after the text must be padding.
    data, _nul, padding = data.partition(b"\0")
    if padding.strip(b"\0") or b"createType" not in data:
        raise SourceError(f"disk {name!r} of VM {vm!r} is not a VMDK descriptor", subject=session.location.url,
                          hint="Point the .vmx at the descriptor (<vm>.vmdk), not at the -flat.vmdk extent")
    info = parse_descriptor(data.decode("utf-8", "replace"))
    if info.is_delta or info.parent_hint:
        raise _snapshot_error(vm, f"{name} has parent disk {info.parent_hint or info.parent_cid!r}")
    kind = (info.create_type or "").lower()
    if kind not in _FLAT_TYPES:
        raise NotSupportedError(
            f"disk {name!r} of VM {vm!r} has createType {info.create_type!r}; only flat disks (vmfs, "
            "monolithicFlat) are read over SSH, not sparse, seSparse, split or raw device mappings",
            subject=session.location.url,
            hint="Clone it to a flat disk with vmkfstools on the ESXi host, or copy the VM and use a local path")
    if len(info.extents) != 1:
        raise NotSupportedError(f"disk {name!r} of VM {vm!r} has {len(info.extents)} extents; only one "
                                "is supported over SSH", subject=session.location.url)
    extent = info.extents[0]
    if "/" in extent or extent in ("", ".", ".."):
        raise UnsafeImageError(f"the VMDK descriptor {name!r} names an extent outside its own directory "
                               f"({extent!r})", subject=session.location.url,
                               hint="Only extents in the same directory as the descriptor are read")
    extent_path = posixpath.join(posixpath.dirname(descriptor_path), extent)
    remote_size = session.size(extent_path)
    if remote_size is None:
        raise SourceError(f"the extent {extent!r} of disk {name!r} does not exist on the SSH server",
                          subject=session.location.url)
    return extent_path, info.size_bytes or remote_size


def _check_vmsd(session: SshSession, vmx_path: str, vm: str) -> None:
    vmsd = posixpath.splitext(vmx_path)[0] + ".vmsd"
    data = session.read(vmsd, missing_ok=True)
    if data is None:
        return
    snapshots = count_snapshots(parse_vmx_keys(decode_vmx(data)))
    if snapshots > 0:
        raise _snapshot_error(vm, f"{posixpath.basename(vmsd)} lists {snapshots} snapshot(s)")


def load(spec: SourceSpec) -> Source:
    """``load(spec)`` for input ``vmx`` with an ``ssh://`` path: read it over SFTP, serve its disks with nbdkit."""
    url = spec.uri if spec.uri and spec.uri.startswith("ssh://") else spec.single_path()
    location = parse_ssh_url(url)
    if not location.path.lower().endswith(".vmx"):
        raise SourceError(f"the ssh:// path must name a .vmx file: {location.path!r}", subject=url)
    credentials = SshCredentials(ssh_host_key=spec.ssh_host_key, known_hosts=spec.known_hosts,
                                 password=spec.password, private_key=spec.private_key)
    with SshSession(location, credentials) as session:
        data = session.read(location.path) or b""
        vmx_dir = posixpath.dirname(location.path)
        default_name = posixpath.splitext(posixpath.basename(location.path))[0]
        try:
            source = parse_vmx(decode_vmx(data), vmx_dir=vmx_dir, default_name=default_name)
        except SourceError as exc:
            if exc.subject is None:
                exc.subject = url
            raise
        _check_vmsd(session, location.path, source.name)
        known_hosts_line = session.known_hosts_line()
        for disk in source.disks:
            if "://" in disk.path:
                raise NotSupportedError(f"disk {disk.path!r} of VM {source.name!r} is not a datastore path",
                                        subject=url)
            extent_path, size = _flat_extent(session, disk.path, source.name)
            extent = location.with_path(extent_path)
            disk.path = extent.url
            disk.format = "raw"
            disk.size_bytes = size
            storage.register_disk_server(disk.path, SshDiskServer(location=extent, credentials=credentials,
                                                                  known_hosts_line=known_hosts_line))
    return source
