"""Fixtures for tests against a real libvirt daemon: the daemon, storage pools, a connection."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.libvirtd import (
    LibvirtdUnavailable,
    LoopDevice,
    PrivateLibvirtd,
    attach_loop,
    define_dir_pool,
    define_disk_pool,
    remove_pool,
    start_libvirtd,
)

DISK_POOL_SIZE = 256 << 20
# Whatever a volume does not overwrite keeps this byte, so an unwritten hole shows.
DISK_POOL_FILL = b"\xaa"


@dataclass
class Pool:
    name: str
    kind: str
    path: Path | None = None
    loop: LoopDevice | None = None


@pytest.fixture(scope="session")
def libvirtd() -> Iterator[PrivateLibvirtd]:
    """A libvirtd + virtlogd of this test session, in a mount namespace of their own."""
    try:
        daemon = start_libvirtd()
    except LibvirtdUnavailable as exc:
        pytest.skip(f"no private libvirtd here: {exc}")
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def libvirt_conn(libvirtd: PrivateLibvirtd) -> Iterator[object]:
    from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt.client import connect

    conn = connect(libvirtd.uri)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def dir_pool(libvirtd: PrivateLibvirtd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    path = tmp_path_factory.mktemp("dirpool")
    define_dir_pool(libvirtd, "kvt-dir", path)
    try:
        yield Pool(name="kvt-dir", kind="dir", path=path)
    finally:
        remove_pool(libvirtd, "kvt-dir")


@pytest.fixture(scope="session")
def disk_pool(libvirtd: PrivateLibvirtd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    """A ``disk`` pool on a loop device: every volume is a GPT partition."""
    if subprocess.run(["which", "parted"], capture_output=True, check=False).returncode != 0:
        pytest.skip("parted is not installed (disk pools need it)")
    image = tmp_path_factory.mktemp("diskpool") / "disk.img"
    loop = attach_loop(image, DISK_POOL_SIZE, fill=DISK_POOL_FILL)
    try:
        define_disk_pool(libvirtd, "kvt-disk", loop)
        yield Pool(name="kvt-disk", kind="disk", loop=loop)
    finally:
        remove_pool(libvirtd, "kvt-disk")
        loop.detach()


@pytest.fixture
def isolated_bridge() -> Iterator[str]:
    """A host bridge with no uplink: the guest's NIC attaches to it and reaches nothing."""
    name = f"kvtbr{os.getpid() % 100000}"
    subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True, capture_output=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)
