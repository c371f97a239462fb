"""A read-only nbdkit started by a test, on a unix socket or a loopback TCP port.

Usable as a context manager or stopped explicitly; ``uri`` is what a
``SourceDisk.path`` (or a libvirt ``<source protocol='nbd'>``) points at.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Nbdkit:
    """``nbdkit -r -f <plugin> <args>`` serving one export, until :meth:`stop`."""

    def __init__(self, plugin_args: list[str], *, unix_dir: Path | None = None, export: str = "",
                 filters: list[str] | None = None) -> None:
        self.export = export
        self.socket: Path | None = None
        self.port: int | None = None
        argv = ["nbdkit", "-r", "-f", "--exit-with-parent"]
        if export:
            argv += ["-e", export]
        if unix_dir is not None:
            self.socket = unix_dir / "nbd.sock"
            argv += ["-U", str(self.socket)]
        else:
            self.port = free_port()
            argv += ["-i", "127.0.0.1", "-p", str(self.port)]
        for name in filters or []:
            argv += ["--filter", name]
        self.argv = argv + plugin_args
        self.process = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._wait_ready()

    @property
    def uri(self) -> str:
        if self.socket is not None:
            return f"nbd+unix:///{self.export}?socket={self.socket}"
        return f"nbd://127.0.0.1:{self.port}/{self.export}" if self.export else f"nbd://127.0.0.1:{self.port}"

    def libvirt_source(self) -> str:
        """The ``<source protocol='nbd'>`` element for a libvirt domain XML disk."""
        name = f" name='{self.export}'" if self.export else ""
        if self.socket is not None:
            return f"<source protocol='nbd'{name}><host transport='unix' socket='{self.socket}'/></source>"
        return f"<source protocol='nbd'{name}><host name='127.0.0.1' port='{self.port}'/></source>"

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read() if self.process.stderr else ""
                raise RuntimeError(f"nbdkit exited with {self.process.returncode}: {stderr}")
            if self._accepts():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nbdkit did not start listening within {timeout} s: {self.argv}")

    def _accepts(self) -> bool:
        family = socket.AF_UNIX if self.socket is not None else socket.AF_INET
        address: str | tuple[str, int] = str(self.socket) if self.socket is not None else ("127.0.0.1", self.port or 0)
        if self.socket is not None and not os.path.exists(self.socket):
            return False
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(address)
            except OSError:
                return False
        return True

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()

    def __enter__(self) -> Nbdkit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_file(path: Path | str, *, unix_dir: Path | None = None) -> Nbdkit:
    """Serve a file's bytes read-only (whatever format it holds: the client names the format)."""
    return Nbdkit(["file", str(path)], unix_dir=unix_dir)
