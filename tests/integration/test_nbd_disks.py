"""Disks read over NBD: a real read-only nbdkit serves a phony guest's image.

The guest is described by a libvirt domain XML whose disk is
``<source protocol='nbd'>``; the engine reads it through qemu's nbd block
driver, never writing the source.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.conversion import ConvertOptions, run_convert
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec
from tests.guests import convertible
from tests.guests.phony import PhonyGuest
from tests.hashing import sha256
from tests.nbd import Nbdkit, free_port, serve_file
from tests.playbook import run_tasks

pytestmark = pytest.mark.integration


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="kvt-nbd-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def domain_xml(name: str, source_element: str, fmt: str) -> str:
    return f"""<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>1536</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='network' device='disk'>
      <driver name='qemu' type='{fmt}'/>
      {source_element}
      <target dev='sda' bus='scsi'/>
    </disk>
    <interface type='network'><mac address='52:54:00:12:34:56'/><source network='default'/>
      <model type='e1000'/></interface>
  </devices>
</domain>
"""


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_inspect_guest_over_nbd(transport: str, phony_debian12: PhonyGuest, tmp_path: Path,
                                short_dir: Path) -> None:
    guest = phony_debian12
    before = sha256(guest.disk)
    work = tmp_path / "work"
    with serve_file(guest.disk, unix_dir=short_dir if transport == "unix" else None) as server:
        xml = tmp_path / "domain.xml"
        xml.write_text(domain_xml("nbd-guest", server.libvirt_source(), guest.format))
        run = run_tasks([{"name": "inspect", "kvmigrate.v2v.inspect_guest": {
            "input": "libvirtxml", "path": str(xml), "work_dir": str(work)}, "register": "inspected"}], tmp_path)
    assert run.rc == 0, run.output
    result = run.results["inspected"]
    assert not result.get("failed"), result.get("msg")
    assert result["guest"]["distro"] == "debian" and result["guest"]["major_version"] == 12
    assert result["guest"]["hostname"] == guest.expected.hostname
    disk = result["source"]["disks"][0]
    assert disk["path"] == server.uri and disk["format"] == "raw"
    assert disk["size_bytes"] == guest.disk.stat().st_size
    assert 0 < result["estimate"]["allocated_bytes"] < guest.disk.stat().st_size
    assert sha256(guest.disk) == before
    assert list(work.iterdir()) == [], "the overlays were not cleaned up"


def test_unreachable_nbd_server_fails_clearly(tmp_path: Path, short_dir: Path) -> None:
    port = free_port()
    missing_socket = short_dir / "nobody.sock"
    work = tmp_path / "work"
    tasks = []
    for register, source in (("tcp", f"<source protocol='nbd'><host name='127.0.0.1' port='{port}'/></source>"),
                             ("unix", f"<source protocol='nbd'><host transport='unix' socket='{missing_socket}'/>"
                                      "</source>")):
        xml = tmp_path / f"{register}.xml"
        xml.write_text(domain_xml(f"unreachable-{register}", source, "raw"))
        tasks.append({"name": register, "kvmigrate.v2v.inspect_guest": {
            "input": "libvirtxml", "path": str(xml), "work_dir": str(work)}, "register": register})
    run = run_tasks(tasks, tmp_path)
    assert run.rc == 0, run.output
    tcp, unix = run.results["tcp"], run.results["unix"]
    assert tcp["failed"] and f"nbd://127.0.0.1:{port}" in tcp["msg"]
    assert "Connection refused" in tcp["msg"] and "Check that the NBD server is running" in tcp["msg"]
    assert tcp["error"] == "SourceError"
    assert unix["failed"] and str(missing_socket) in unix["msg"] and "No such file or directory" in unix["msg"]
    assert list(work.iterdir()) == [], "something was left in the work directory"


def test_metadata_only_does_not_connect(tmp_path: Path) -> None:
    xml = tmp_path / "domain.xml"
    port = free_port()
    xml.write_text(domain_xml("meta", f"<source protocol='nbd' name='disk0'><host name='127.0.0.1' port='{port}'/>"
                                      "</source>", "raw"))
    run = run_tasks([{"name": "meta", "kvmigrate.v2v.inspect_guest": {
        "input": "libvirtxml", "path": str(xml), "inspect_os": False}, "register": "meta"}], tmp_path)
    meta = run.results["meta"]
    assert not meta.get("failed"), meta.get("msg")
    assert meta["source"]["disks"][0]["path"] == f"nbd://127.0.0.1:{port}/disk0"


def test_convert_from_nbd_to_local(tmp_path: Path, short_dir: Path) -> None:
    """A qcow2 image served as bytes over NBD: the format comes from the XML, never probed."""
    guest = convertible.build("phony-rocky9")
    assert guest.format == "qcow2"
    before = sha256(guest.disk)
    out = tmp_path / "out"
    with Nbdkit(["file", str(guest.disk)], unix_dir=short_dir, export="rocky") as server:
        xml = tmp_path / "domain.xml"
        xml.write_text(domain_xml("nbd-rocky", server.libvirt_source(), guest.format))
        result = run_convert(SourceSpec(input="libvirtxml", path=str(xml), work_dir=str(tmp_path / "w")),
                             ConvertOptions(output="local", output_dir=str(out), output_format="qcow2"))
    assert sha256(guest.disk) == before
    assert result.source is not None and result.source.disks[0].path == server.uri
    assert any("removed hypervisor tools: open-vm-tools" in s for s in result.conversion), result.conversion
    assert any(f"rebuilt the initramfs of {guest.details['kernel']}" in s for s in result.conversion)
    disk = Path(result.target["disks"][0]["path"])
    assert disk.exists() and (out / "nbd-rocky.xml").exists()
    assert not list(out.glob("*.part"))
    assert {p.name for p in (tmp_path / "w").rglob("*.qcow2")} == set(), "overlays left behind"
