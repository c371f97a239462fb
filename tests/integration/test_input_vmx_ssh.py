"""Input ``vmx`` over ``ssh://``: a real sshd started by the test serves the VMware guest's VM directory.

The .vmx and descriptors are read with SFTP, the flat extent through
``nbdkit -r ssh``; the host key is verified, never auto-accepted, and no
secret appears in results or logs.
"""

from __future__ import annotations

import glob
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.conversion import ConvertOptions, run_convert
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import NotSupportedError, SourceError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec, open_source
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.pipeline import open_disks, run_inspect
from tests.guests.vmware_debian import VMwareGuest
from tests.hashing import sha256
from tests.playbook import run_tasks
from tests.sshd import PrivateSshd

pytestmark = pytest.mark.integration

PASSWORD = "kvt-Pa55-w0rd-not-in-logs"
SAME_FACTS = ("name", "hypervisor", "input", "memory_mb", "vcpus", "cpu", "firmware", "secure_boot", "nics",
              "removables", "display", "sound", "genid")


@pytest.fixture(scope="module")
def sshd() -> Iterator[PrivateSshd]:
    server = PrivateSshd(password=PASSWORD)
    yield server
    server.stop()


def nbdkit_ssh_processes() -> list[str]:
    out = subprocess.run(["pgrep", "-af", "nbdkit .*-U /tmp/kvmigrate-ssh-"], capture_output=True, text=True,
                         check=False).stdout
    return out.splitlines()


def leftovers() -> list[str]:
    return glob.glob("/tmp/kvmigrate-ssh-*")


def test_inspect_over_ssh_matches_local_vmx(sshd: PrivateSshd, vmware_guest: VMwareGuest, tmp_path: Path) -> None:
    before = sha256(vmware_guest.vmx_flat)
    work = tmp_path / "work"
    url = sshd.url(str(vmware_guest.vmx))
    run = run_tasks([
        {"name": "over ssh", "kvmigrate.v2v.inspect_guest": {
            "input": "vmx", "path": url, "password": PASSWORD, "host_key_fingerprint": sshd.host_key_fingerprint,
            "work_dir": str(work)}, "register": "remote"},
        {"name": "local", "kvmigrate.v2v.inspect_guest": {
            "input": "vmx", "path": str(vmware_guest.vmx), "inspect_os": False}, "register": "local"},
    ], tmp_path, extra_args=["-v"])
    assert run.rc == 0, run.output
    remote, local = run.results["remote"], run.results["local"]
    assert not remote.get("failed"), remote.get("msg")
    assert {k: remote["source"][k] for k in SAME_FACTS} == {k: local["source"][k] for k in SAME_FACTS}
    assert remote["source"]["nics"][0]["mac"] == vmware_guest.mac.lower()
    disk, local_disk = remote["source"]["disks"][0], local["source"]["disks"][0]
    assert disk["path"] == sshd.url(str(vmware_guest.vmx_flat)) and disk["format"] == "raw"
    assert (disk["bus"], disk["controller"]) == (local_disk["bus"], local_disk["controller"])
    assert disk["size_bytes"] == vmware_guest.virtual_size
    guest = remote["guest"]
    assert (guest["distro"], guest["major_version"], guest["hostname"]) == ("debian", 12, vmware_guest.hostname)
    assert any(t.endswith("open-vm-tools") for t in guest["hypervisor_tools"])
    # nothing secret in the result, the Ansible output or the server's log
    for text in (json.dumps(run.results), run.output, sshd.log):
        assert PASSWORD not in text
    assert sha256(vmware_guest.vmx_flat) == before
    assert list(work.iterdir()) == [] and leftovers() == [] and nbdkit_ssh_processes() == []


def test_private_key_text_and_known_hosts(sshd: PrivateSshd, vmware_guest: VMwareGuest, tmp_path: Path) -> None:
    """Key text goes to a private ssh-agent for nbdkit; the disks open and close again."""
    spec = SourceSpec(input="vmx", path=sshd.url(str(vmware_guest.vmx)), private_key=sshd.client_key_text,
                      known_hosts=str(sshd.known_hosts), work_dir=str(tmp_path))
    with open_source(spec) as source, open_disks(source, str(tmp_path)) as opened:
        assert opened[0].image.virtual_size == vmware_guest.virtual_size
        assert len(nbdkit_ssh_processes()) == 1
        assert len(glob.glob("/tmp/kvmigrate-ssh-*/agent.sock")) == 1
    assert nbdkit_ssh_processes() == [] and leftovers() == []
    assert "Accepted publickey for root" in sshd.log
    # a key file path works too, and metadata-only never starts nbdkit
    meta = run_inspect(SourceSpec(input="vmx", path=sshd.url(str(vmware_guest.vmx)), private_key=str(sshd.client_key),
                                  known_hosts=str(sshd.known_hosts)), inspect_os=False)
    assert meta.source is not None and meta.source.name == vmware_guest.name


def test_unknown_host_key_is_refused(sshd: PrivateSshd, vmware_guest: VMwareGuest, tmp_path: Path) -> None:
    password_attempts = sshd.log.count("password for root")
    run = run_tasks([
        {"name": "no pin", "kvmigrate.v2v.inspect_guest": {
            "input": "vmx", "path": sshd.url(str(vmware_guest.vmx)), "password": PASSWORD,
            "work_dir": str(tmp_path / "w")}, "register": "unknown"},
        # by the option's earlier name, an alias of host_key_fingerprint
        {"name": "wrong pin", "kvmigrate.v2v.inspect_guest": {
            "input": "vmx", "path": sshd.url(str(vmware_guest.vmx)), "password": PASSWORD,
            "ssh_host_key": "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "register": "mismatch"},
    ], tmp_path)
    assert run.rc == 0, run.output
    unknown, mismatch = run.results["unknown"], run.results["mismatch"]
    assert unknown["failed"] and "is unknown" in unknown["msg"]
    assert sshd.host_key_fingerprint in unknown["msg"] and "source.host_key_fingerprint" in unknown["msg"]
    assert mismatch["failed"] and "does NOT match the pinned" in mismatch["msg"]
    assert sshd.host_key_fingerprint in mismatch["msg"]
    # refused before authenticating: the server never saw a password attempt
    assert sshd.log.count("password for root") == password_attempts, "a password was sent to an unverified host"
    assert PASSWORD not in json.dumps(run.results) + run.output
    assert nbdkit_ssh_processes() == [] and leftovers() == [] and sshd.session_pids() == []
    assert not (tmp_path / "w").exists() or list((tmp_path / "w").iterdir()) == []


def test_known_hosts_with_another_key_is_refused(sshd: PrivateSshd, vmware_guest: VMwareGuest,
                                                 tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    key_type, key_data = Path(f"{other}.pub").read_text().split()[:2]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{sshd.host}]:{sshd.port} {key_type} {key_data}\n")
    with pytest.raises(SourceError, match="does NOT match known_hosts") as failure:
        open_source(SourceSpec(input="vmx", path=sshd.url(str(vmware_guest.vmx)), password=PASSWORD,
                               known_hosts=str(known_hosts)))
    assert sshd.host_key_fingerprint in str(failure.value)
    assert known_hosts.read_text().count("\n") == 1, "the known_hosts file was written to"


def test_wrong_password_fails_clearly(sshd: PrivateSshd, vmware_guest: VMwareGuest, tmp_path: Path) -> None:
    run = run_tasks([{"name": "wrong", "kvmigrate.v2v.inspect_guest": {
        "input": "vmx", "path": sshd.url(str(vmware_guest.vmx)), "password": "not-the-" + PASSWORD,
        "host_key_fingerprint": sshd.host_key_fingerprint}, "register": "wrong"}], tmp_path)
    wrong = run.results["wrong"]
    assert wrong["failed"] and "SSH authentication as root@" in wrong["msg"]
    assert "Check source.password" in wrong["msg"] and wrong["error"] == "SSHAuthError"
    assert "not-the-" + PASSWORD not in json.dumps(run.results) + run.output
    assert nbdkit_ssh_processes() == [] and leftovers() == []


@pytest.mark.parametrize(("create_type", "message"), [
    ("seSparse", "only flat disks"),
    ("monolithicSparse", "only flat disks"),
    ("vmfsRawDeviceMap", "only flat disks"),
])
def test_non_flat_disks_are_refused(create_type: str, message: str, sshd: PrivateSshd, tmp_path: Path) -> None:
    vm = tmp_path / "vm"
    vm.mkdir()
    (vm / "vm.vmx").write_text('displayName = "sparse"\nscsi0.present = "TRUE"\nscsi0:0.present = "TRUE"\n'
                               'scsi0:0.fileName = "vm.vmdk"\n')
    (vm / "vm.vmdk").write_text(f'# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n'
                                f'createType="{create_type}"\nRW 2048 SESPARSE "vm-sesparse.vmdk"\n')
    with pytest.raises(NotSupportedError, match=message) as failure:
        open_source(SourceSpec(input="vmx", path=sshd.url(str(vm / "vm.vmx")), password=PASSWORD,
                               host_key_fingerprint=sshd.host_key_fingerprint))
    assert create_type in str(failure.value)


def test_snapshots_are_refused(sshd: PrivateSshd, tmp_path: Path) -> None:
    vm = tmp_path / "vm"
    vm.mkdir()
    (vm / "vm.vmx").write_text('displayName = "snap"\nscsi0:0.present = "TRUE"\nscsi0:0.fileName = "vm.vmdk"\n')
    (vm / "vm.vmdk").write_text('# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n'
                                'createType="vmfs"\nRW 2048 VMFS "vm-flat.vmdk"\n')
    (vm / "vm-flat.vmdk").write_bytes(b"\0" * 2048 * 512)
    (vm / "vm.vmsd").write_text('snapshot.numSnapshots = "1"\nsnapshot0.uid = "1"\nsnapshot0.fileName = "x"\n')
    with pytest.raises(SourceError, match="has snapshots"):
        open_source(SourceSpec(input="vmx", path=sshd.url(str(vm / "vm.vmx")), password=PASSWORD,
                               host_key_fingerprint=sshd.host_key_fingerprint))
    (vm / "vm.vmsd").unlink()
    (vm / "vm.vmdk").write_text('# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n'
                                'createType="vmfs"\nRW 2048 VMFS "../elsewhere-flat.vmdk"\n')
    with pytest.raises(SourceError, match="outside its own directory"):
        open_source(SourceSpec(input="vmx", path=sshd.url(str(vm / "vm.vmx")), password=PASSWORD,
                               host_key_fingerprint=sshd.host_key_fingerprint))


def test_convert_guest_check_mode_over_ssh(sshd: PrivateSshd, vmware_guest: VMwareGuest, tmp_path: Path) -> None:
    """Through the module: the source's ssh:// path is not overridden by the output's URI option."""
    before = sha256(vmware_guest.vmx_flat)
    out, work = tmp_path / "out", tmp_path / "work"
    run = run_tasks([{"name": "plan over ssh", "check_mode": True, "kvmigrate.v2v.convert_guest": {
        "input": "vmx", "path": sshd.url(str(vmware_guest.vmx)), "password": PASSWORD,
        "host_key_fingerprint": sshd.host_key_fingerprint, "work_dir": str(work), "output": "local",
        "output_dir": str(out)}, "register": "plan"}], tmp_path)
    plan = run.results["plan"]
    assert run.rc == 0 and not plan.get("failed"), plan.get("msg", run.output)
    assert plan["changed"] is True and plan["source"]["disks"][0]["path"] == sshd.url(str(vmware_guest.vmx_flat))
    assert plan["guest"]["distro"] == "debian" and plan["plan"]["domain_xml"]
    assert not out.exists() or list(out.iterdir()) == []
    assert PASSWORD not in json.dumps(run.results) and PASSWORD not in run.output
    assert sha256(vmware_guest.vmx_flat) == before
    assert leftovers() == [] and nbdkit_ssh_processes() == []


@pytest.mark.e2e  # a real conversion of the real guest: minutes under TCG
def test_convert_over_ssh_to_local(sshd: PrivateSshd, vmware_guest: VMwareGuest, tmp_path: Path) -> None:
    """The whole pipeline, the copy included, reads the flat extent through nbdkit ssh."""
    before = sha256(vmware_guest.vmx_flat)
    out = tmp_path / "out"
    result = run_convert(SourceSpec(input="vmx", path=sshd.url(str(vmware_guest.vmx)), password=PASSWORD,
                                    known_hosts=str(sshd.known_hosts), work_dir=str(tmp_path / "w")),
                         ConvertOptions(output="local", output_dir=str(out), output_format="qcow2"))
    assert sha256(vmware_guest.vmx_flat) == before
    assert any("open-vm-tools" in step for step in result.conversion), result.conversion
    disk = Path(result.target["disks"][0]["path"])
    assert disk.exists() and disk.stat().st_size > 100 << 20
    assert (out / f"{vmware_guest.name}.xml").exists() and not list(out.glob("*.part"))
    assert [p.name for p in result.phases][-2:] == ["copy", "output"]
    assert PASSWORD not in json.dumps(result.to_dict())
    assert nbdkit_ssh_processes() == [] and leftovers() == []


def test_a_disk_failing_at_open_stops_nbdkit(sshd: PrivateSshd, tmp_path: Path) -> None:
    """The extent vanishes between loading and opening: nbdkit's error is shown and nothing is left running."""
    vm = tmp_path / "vm"
    vm.mkdir()
    (vm / "vm.vmx").write_text('displayName = "gone"\nscsi0:0.present = "TRUE"\nscsi0:0.fileName = "vm.vmdk"\n')
    (vm / "vm.vmdk").write_text('# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n'
                                'createType="vmfs"\nRW 2048 VMFS "vm-flat.vmdk"\n')
    (vm / "vm-flat.vmdk").write_bytes(b"\0" * 2048 * 512)
    source = open_source(SourceSpec(input="vmx", path=sshd.url(str(vm / "vm.vmx")), password=PASSWORD,
                                    host_key_fingerprint=sshd.host_key_fingerprint))
    (vm / "vm-flat.vmdk").unlink()
    work = tmp_path / "work"
    with pytest.raises(SourceError, match="Check that the NBD server is running") as failure:  # noqa: SIM117
        with source, open_disks(source, str(work)):
            pass
    message = str(failure.value)
    assert message.startswith(sshd.url(str(vm / "vm-flat.vmdk")) + ": reading it through nbdkit's ssh plugin failed")
    assert "SFTP server: No such file" in message
    assert PASSWORD not in str(failure.value)
    assert nbdkit_ssh_processes() == [] and leftovers() == [] and list(work.iterdir()) == []
