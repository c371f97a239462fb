"""A private sshd for tests, on a free loopback port, with its own host key.

``PrivateSshd`` runs ``/usr/sbin/sshd -D`` from its own config in its own
directory (host key, authorized_keys, known_hosts for clients, log). Root
logs in with the client key it generates, and, when ``password`` is given,
with that password too: sshd runs in a private mount namespace where a copy
of /etc/shadow with root's hash replaced is bind-mounted over the real one,
so the machine's own accounts are never changed. Without ``password`` every
password is wrong.

Usable as a context manager, or call :meth:`stop` (it also ends the
per-connection sshd processes it spawned).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(*argv: str, input_text: str | None = None) -> str:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, input=input_text).stdout


class PrivateSshd:
    """sshd on 127.0.0.1:<port> until :meth:`stop`.

    Attributes: ``port``, ``host``, ``user`` (root), ``host_key_fingerprint``
    (``SHA256:...``), ``known_hosts`` (a file naming the server),
    ``client_key`` / ``client_key_text`` (the private key root accepts),
    ``password`` (or None), ``directory``, ``log``.
    """

    def __init__(self, *, directory: Path | None = None, password: str | None = None,
                 extra_config: list[str] | None = None) -> None:
        self.directory = Path(directory or tempfile.mkdtemp(prefix="kvt-sshd-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self._own_directory = directory is None
        self.host = "127.0.0.1"
        self.user = "root"
        self.password = password
        self.port = _free_port()
        host_key = self.directory / "ssh_host_ed25519_key"
        self.client_key = self.directory / "client_ed25519"
        for path in (host_key, self.client_key):
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kvmigrate-test", "-f", str(path))
        self.client_key_text = self.client_key.read_text()
        (self.directory / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        self.host_key_fingerprint = _run("ssh-keygen", "-lf", f"{host_key}.pub").split()[1]
        key_type, key_data = Path(f"{host_key}.pub").read_text().split()[:2]
        self.known_hosts = self.directory / "known_hosts"
        self.known_hosts.write_text(f"[{self.host}]:{self.port} {key_type} {key_data}\n")
        config = self.directory / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", f"ListenAddress {self.host}", f"HostKey {host_key}",
            f"PidFile {self.directory}/sshd.pid", f"AuthorizedKeysFile {self.directory}/authorized_keys",
            "StrictModes no", "PermitRootLogin yes", "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no", "UsePAM no", "Subsystem sftp internal-sftp",
            "LogLevel VERBOSE", "MaxAuthTries 6", *(extra_config or []), ""]))
        Path("/run/sshd").mkdir(exist_ok=True)
        argv = [SSHD, "-D", "-e", "-f", str(config)]
        if password is not None:
            shadow = self.directory / "shadow"
            hashed = _run("openssl", "passwd", "-6", "-stdin", input_text=password).strip()
            lines = Path("/etc/shadow").read_text().splitlines()
            shadow.write_text("".join((f"root:{hashed}:{line.split(':', 2)[2]}" if line.startswith("root:")
                                       else line) + "\n" for line in lines))
            shadow.chmod(0o600)
            argv = ["unshare", "-m", "--propagation", "private", "--", "/bin/sh", "-c",
                    'mount --bind "$1" /etc/shadow && shift && exec "$@"', "sh", str(shadow), *argv]
        self._log = open(self.directory / "sshd.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(argv, stdout=self._log, stderr=self._log, stdin=subprocess.DEVNULL)
        self._wait_listening()

    @property
    def log(self) -> str:
        return (self.directory / "sshd.log").read_text(errors="replace")

    def url(self, path: str) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}{path}"

    def _wait_listening(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log
                self.stop()
                raise RuntimeError(f"sshd exited with {self.process.returncode}: {log}")
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                if sock.connect_ex((self.host, self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not listen on {self.port}: {self.log}")

    def session_pids(self) -> list[int]:
        """sshd processes serving connections (descendants of the listener)."""
        pids: list[int] = []
        todo = [self.process.pid]
        while todo:
            parent = todo.pop()
            out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True, check=False).stdout
            children = [int(p) for p in out.split()]
            pids += children
            todo += children
        return pids

    def stop(self) -> None:
        for pid in self.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PrivateSshd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
