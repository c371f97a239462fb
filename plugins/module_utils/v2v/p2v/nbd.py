# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only NBD exports of the physical machine's disks, on loopback only.

``nbdkit -r`` serves a raw disk (a block device, or a raw test image);
``qemu-nbd -r`` serves a test disk in another format (qcow2, vmdk ...) as
its raw contents. Both listen on 127.0.0.1 only and run in the foreground as
children of the P2V supervisor, and die with it (nbdkit's
``--exit-with-parent``; the parent-death signal for qemu-nbd), so a
supervisor that is killed never leaves an export behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import V2VError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.process import require_tool
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.storage import qemu_driver

NBD_SERVERS = ("auto", "nbdkit", "qemu-nbd")
_PR_SET_PDEATHSIG = 1


class NBDExportError(V2VError):
    """An NBD server could not export a disk."""


@dataclass
class NBDExport:
    device: str
    port: int
    server: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def export_argv(server: str, path: str, fmt: str, port: int, *, rate: str | None = None) -> list[str]:
    """The command line of a read-only export of ``path`` on 127.0.0.1:``port``."""
    if server == "nbdkit":
        argv = [require_tool("nbdkit", "nbdkit"), "--foreground", "--readonly", "--exit-with-parent",
                "--ipaddr", "127.0.0.1", "--port", str(port)]
        if rate:
            argv += ["--filter=rate"]
        argv += ["file", f"file={path}"]
        if rate:
            argv.append(f"rate={rate}")
        return argv
    if rate:
        raise NBDExportError("a rate limit needs the nbdkit NBD server", subject=path,
                             hint="Use nbd_server: nbdkit (raw disks), or remove the rate limit")
    return [require_tool("qemu-nbd", "qemu-utils"), "--read-only", "--persistent", "--shared=8",
            "--bind=127.0.0.1", f"--port={port}", f"--format={qemu_driver(fmt)}", "--cache=none", "--aio=threads",
            path]


def choose_server(requested: str, fmt: str) -> str:
    if requested == "auto":
        return "nbdkit" if fmt == "raw" else "qemu-nbd"
    if requested == "nbdkit" and fmt != "raw":
        raise NBDExportError(f"nbdkit exports raw disks only, this test disk is {fmt}",
                             hint="Use nbd_server: qemu-nbd or auto")
    return requested


def start_export(path: str, fmt: str, *, log_path: str, server: str = "auto", rate: str | None = None,
                 timeout: float = 20.0) -> NBDExport:
    """Export ``path`` read-only on a free loopback port; return when the server answers."""
    chosen = choose_server(server, fmt)
    port = free_loopback_port()
    argv = export_argv(chosen, path, fmt, port, rate=rate)
    with open(log_path, "ab") as log:
        # The server's messages go to a log file, not a pipe: nobody reads a
        # pipe once the supervisor is detached, and a full pipe would block it.
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   preexec_fn=_die_with_parent, close_fds=True)  # noqa: PLW1509
    export = NBDExport(device=path, port=port, server=chosen, process=process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with open(log_path, encoding="utf-8", errors="replace") as handle:
                stderr = handle.read()[-2000:]
            raise NBDExportError(f"{chosen} exited with code {process.returncode}: {stderr.strip()}", subject=path,
                                 hint="Check that the disk exists and is readable")
        if _answers(port):
            return export
        time.sleep(0.1)
    export.stop()
    raise NBDExportError(f"{chosen} did not answer on 127.0.0.1:{port} within {timeout:.0f} s", subject=path)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.settimeout(2.0)
            return sock.recv(8) == b"NBDMAGIC"
    except OSError:
        return False


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
