"""Input ``libvirt``: a domain by name on the test session's private libvirtd (no mocks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import NotSupportedError, SourceError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import OpenedSource, SourceSpec, open_source
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.libvirt import (
    RemoteDiskRefusal,
    attach_remote_disks,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.libvirtxml import parse_domain_xml
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Source, SourceDisk
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.pipeline import open_disks
from tests.guests.phony import PhonyGuest
from tests.hashing import sha256
from tests.libvirt_fixtures import Pool
from tests.libvirtd import PrivateLibvirtd
from tests.playbook import run_tasks
from tests.sshd import PrivateSshd

pytestmark = pytest.mark.integration

MAC = "52:54:00:4b:10:01"


def domain_xml(name: str, disks: str, *, nic: bool = True) -> str:
    interface = (f"<interface type='network'><mac address='{MAC}'/><source network='default'/>"
                 "<model type='e1000'/></interface>") if nic else ""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>768</memory>
  <vcpu>2</vcpu>
  <cpu><topology sockets='1' cores='2' threads='1'/></cpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    {disks}
    {interface}
  </devices>
</domain>
"""


@pytest.fixture
def define(libvirtd: PrivateLibvirtd, tmp_path: Path) -> Iterator:
    names: list[str] = []

    def _define(name: str, disks: str, nic: bool = True) -> str:
        xml = tmp_path / f"{name}.xml"
        xml.write_text(domain_xml(name, disks, nic=nic))
        libvirtd.virsh("define", str(xml))
        names.append(name)
        return name

    yield _define
    for name in names:
        libvirtd.virsh("destroy", name, check=False)
        libvirtd.virsh("undefine", name, check=False)


def test_inspect_a_domain_by_name(libvirtd: PrivateLibvirtd, define, phony_debian12: PhonyGuest,
                                  tmp_path: Path) -> None:
    guest = phony_debian12
    before = sha256(guest.disk)
    name = define("kvt-input-deb", f"<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                                   f"<source file='{guest.disk}'/><target dev='sda' bus='scsi'/></disk>")
    work = tmp_path / "work"
    run = run_tasks([{"name": "by name", "kvmigrate.v2v.inspect_guest": {
        "input": "libvirt", "uri": libvirtd.uri, "domain": name, "work_dir": str(work)}, "register": "found"}],
        tmp_path)
    assert run.rc == 0, run.output
    found = run.results["found"]
    assert not found.get("failed"), found.get("msg")
    src = found["source"]
    assert (src["name"], src["input"], src["hypervisor"], src["memory_mb"], src["vcpus"]) == (
        name, "libvirt", "qemu", 768, 2)
    assert src["cpu"]["cores"] == 2 and src["firmware"] == "bios"
    assert [(n["mac"], n["model"], n["network"]) for n in src["nics"]] == [(MAC, "e1000", "default")]
    assert [(d["path"], d["format"], d["bus"]) for d in src["disks"]] == [(str(guest.disk), "raw", "scsi")]
    assert found["guest"]["distro"] == "debian" and found["guest"]["hostname"] == guest.expected.hostname
    assert sha256(guest.disk) == before
    assert list(work.iterdir()) == []


def test_volume_disks_resolve_through_the_connection(libvirtd: PrivateLibvirtd, dir_pool: Pool, define) -> None:
    libvirtd.virsh("vol-create-as", dir_pool.name, "kvt-input.qcow2", "1M", "--format", "qcow2")
    try:
        name = define("kvt-input-vol", f"<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
                                       f"<source pool='{dir_pool.name}' volume='kvt-input.qcow2'/>"
                                       "<target dev='vda' bus='virtio'/></disk>")
        source = open_source(SourceSpec(input="libvirt", uri=libvirtd.uri, domain=name)).source
        assert [(d.path, d.format) for d in source.disks] == [(f"{dir_pool.path}/kvt-input.qcow2", "qcow2")]
    finally:
        libvirtd.virsh("vol-delete", "kvt-input.qcow2", "--pool", dir_pool.name, check=False)


def test_a_running_domain_is_refused(libvirtd: PrivateLibvirtd, define, tmp_path: Path) -> None:
    name = define("kvt-input-running", "", nic=False)
    libvirtd.virsh("start", "--paused", name)
    with pytest.raises(SourceError, match=r"is paused; its disks are changing.*Shut it down first"):
        open_source(SourceSpec(input="libvirt", uri=libvirtd.uri, domain=name))


def test_unknown_domain_and_unreachable_uri(libvirtd: PrivateLibvirtd, tmp_path: Path) -> None:
    run = run_tasks([
        {"name": "unknown", "kvmigrate.v2v.inspect_guest": {
            "input": "libvirt", "uri": libvirtd.uri, "domain": "kvt-no-such-domain"}, "register": "unknown"},
        {"name": "unreachable", "kvmigrate.v2v.inspect_guest": {
            "input": "libvirt", "uri": f"qemu:///system?socket={tmp_path}/no-daemon.sock", "domain": "x"},
         "register": "unreachable"},
        {"name": "no domain", "kvmigrate.v2v.inspect_guest": {"input": "libvirt", "uri": libvirtd.uri},
         "register": "incomplete"},
    ], tmp_path)
    assert run.rc == 0, run.output
    unknown, unreachable = run.results["unknown"], run.results["unreachable"]
    assert unknown["failed"] and "there is no domain 'kvt-no-such-domain'" in unknown["msg"]
    assert "list --all" in unknown["msg"]
    assert unreachable["failed"] and unreachable["error"] == "LibvirtError"
    assert "cannot connect to libvirt" in unreachable["msg"] and "no-daemon.sock" in unreachable["msg"]
    assert "needs source.uri and source.domain" in run.results["incomplete"]["msg"]


def test_remote_disks_are_refused_when_opened(tmp_path: Path) -> None:
    """The refusal a remote domain's disks get (the metadata itself needs a remote daemon to test)."""
    path = "qemu+ssh://root@kvm.example/var/lib/libvirt/images/vm.qcow2"
    source = Source(name="vm", hypervisor="kvm", input="libvirt", disks=[SourceDisk(path=path, format="qcow2")])
    refused = OpenedSource(source, servers={0: RemoteDiskRefusal(uri="qemu+ssh://root@kvm.example/system",
                                                                 path=path)})
    with (pytest.raises(NotSupportedError, match="disks of remote libvirt domains are not supported yet"),
          refused, open_disks(refused, str(tmp_path))):
        pass
    assert list(tmp_path.iterdir()) == []


def test_remote_ssh_domain_disks_are_read_over_ssh(phony_debian12: PhonyGuest, tmp_path: Path) -> None:
    """A +ssh URI's disks go through the same verified SSH + nbdkit path as an ESXi datastore.

    libvirt's own ssh transport cannot reach the test daemon here (virt-ssh-helper only knows the
    system socket), so the parsed domain is handed over as load() would after reading its XML.
    """
    guest = phony_debian12
    xml = domain_xml("kvt-remote", f"<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                                   f"<source file='{guest.disk}'/><target dev='vda' bus='virtio'/></disk>"
                                   f"<disk type='file' device='disk'><source file='{tmp_path}/gone.img'/>"
                                   "<target dev='vdb' bus='virtio'/></disk>")
    with PrivateSshd() as sshd:
        uri = f"qemu+ssh://root@127.0.0.1:{sshd.port}/system"
        creds = {"private_key": sshd.client_key_text, "known_hosts": str(sshd.known_hosts)}
        source = parse_domain_xml(xml)
        with pytest.raises(SourceError, match=r"gone\.img' of domain 'kvt-remote' does not exist on 127\.0\.0\.1"):
            attach_remote_disks(source, uri, SourceSpec(input="libvirt", uri=uri, domain="kvt-remote", **creds))
        source = parse_domain_xml(xml.replace(f"<disk type='file' device='disk'><source file='{tmp_path}/gone.img'/>"
                                              "<target dev='vdb' bus='virtio'/></disk>", ""))
        remote = attach_remote_disks(source, uri, SourceSpec(input="libvirt", uri=uri, domain="kvt-remote", **creds))
        assert [(d.path, d.format) for d in source.disks] == [(f"ssh://root@127.0.0.1:{sshd.port}{guest.disk}", "raw")]
        with remote, open_disks(remote, str(tmp_path / "w")) as opened:
            assert opened[0].image.virtual_size == guest.disk.stat().st_size
        # without SSH credentials the metadata stays, and the disks are refused when opened
        bare = parse_domain_xml(xml.replace(f"<disk type='file' device='disk'><source file='{tmp_path}/gone.img'/>"
                                            "<target dev='vdb' bus='virtio'/></disk>", ""))
        bare_remote = attach_remote_disks(bare, uri, SourceSpec(input="libvirt", uri=uri, domain="kvt-remote"))
        assert bare.disks[0].path == f"qemu+ssh://root@127.0.0.1:{sshd.port}{guest.disk}"
        with (pytest.raises(NotSupportedError, match="disks of remote libvirt domains are not supported yet"),
              bare_remote, open_disks(bare_remote, str(tmp_path / "w"))):
            pass
    assert list((tmp_path / "w").iterdir()) == []
