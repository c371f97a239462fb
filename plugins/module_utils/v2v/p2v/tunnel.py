# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""P2V's tunnel: reverse port-forwards and keepalives over the SSH connection to the conversion server.

The connection itself (host key verified before any credential is sent,
authentication) is :mod:`..transport.ssh`'s, opened by the physical machine:
the conversion server only needs its SSH port reachable. Then one reverse
port-forward per disk: the server's loopback port N leads to this machine's
NBD export. Keepalives with a reply are sent every ``keepalive_interval``
seconds; after ``keepalive_count_max`` unanswered ones the connection counts
as lost.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.transport.ssh import SSHError, paramiko

_PUMP_BUFFER = 256 * 1024


class ForwardingError(SSHError):
    """The conversion server refused a reverse port-forward."""


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
