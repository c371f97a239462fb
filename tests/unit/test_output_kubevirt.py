"""output kubevirt: the VirtualMachine manifest serializes the decided hardware, and KubeVirt's API types accept it.

The manifests are checked against the types of ``@kubevirt-ui/kubevirt-api`` (tests/kubevirt_schema.py):
field names, nesting (``clock``/``features`` under ``domain``, CPU ``threads``) and value types.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.conversion import ConvertOptions
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import OutputError, V2VError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import (
    Firmware,
    GuestInfo,
    Removable,
    Source,
    SourceCPU,
    SourceDisk,
    SourceNIC,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs import OUTPUT_KINDS, output_for
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.base import OutputJob
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.kubevirt import KubevirtOutput, to_yaml
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.target import decide_hardware
from tests.kubevirt_schema import require_kubevirt_schema, validate_virtual_machines

pytestmark = pytest.mark.unit

GiB = 1024 ** 3
LINUX = GuestInfo(root="/dev/sda1", os_type="linux", distro="debian", version="12")


def _source(**changes) -> Source:
    values = dict(name="web01", hypervisor="vmware", input="ova", memory_mb=2048, vcpus=4,
                  cpu=SourceCPU(sockets=2, cores=2, threads=1),
                  disks=[SourceDisk(path="/src/web01-disk1.vmdk", size_bytes=8 * GiB),
                         SourceDisk(path="/src/web01-disk2.vmdk", size_bytes=2 * GiB)],
                  nics=[SourceNIC(mac="00:50:56:AA:BB:01", network="VM Network"),
                        SourceNIC(mac="00:50:56:aa:bb:02", network="Backend")],
                  removables=[Removable(kind="cdrom")])
    values.update(changes)
    return Source(**values)


def _manifest(tmp_path: Path, source: Source, guest: GuestInfo | None = LINUX, **options):
    output = output_for(ConvertOptions(output="kubevirt", output_dir=str(tmp_path), **options))
    assert isinstance(output, KubevirtOutput)
    job = OutputJob(name=options.get("name") or source.name, source=source, fingerprint="f", work_dir=str(tmp_path))
    output.check(job)
    hw = decide_hardware(source, output.target_disks(job), output.domain_options(job), guest)
    steps = output.prepare(job, hw, "<domain/>")
    return output, output.manifest, steps


CASES = {
    "bios-two-nics": (dict(), dict(networks={"Backend": "tenant-a/backend"})),
    "uefi-secure-boot": (dict(firmware=Firmware("uefi", secure_boot=True), nics=[SourceNIC(mac="00:50:56:00:00:01")]),
                         dict()),
    "hostdisk-scsi": (dict(cpu=SourceCPU()), dict(block_driver="virtio-scsi",
                                                  networks={"Backend": "backend"},
                                                  output_options={"kubevirt_volume": "hostdisk",
                                                                  "kubevirt_hostdisk_dir": "/var/lib/vms"})),
    "pvcs-named-namespace": (dict(nics=[]), dict(output_options={"kubevirt_pvcs": ["root-pvc", "data-pvc"],
                                                                 "kubevirt_namespace": "migrated"})),
    "windows": (dict(nics=[SourceNIC(mac="00:50:56:00:00:09", network="VM Network")]), dict()),
}


def _case(tmp_path: Path, name: str):
    source_changes, options = CASES[name]
    guest = GuestInfo(root="/dev/sda2", os_type="windows", product_name="Windows Server 2019") \
        if name == "windows" else LINUX
    return _manifest(tmp_path, _source(**source_changes), guest, **options)


def test_output_kinds_come_from_the_registry() -> None:
    assert OUTPUT_KINDS == ("local", "qemu", "null", "libvirt", "kubevirt")
    with pytest.raises(V2VError, match="unknown output 'vmware'") as err:
        output_for(ConvertOptions(output="vmware"))
    assert "kubevirt" in (err.value.hint or "")


def test_manifests_validate_against_the_kubevirt_api(tmp_path: Path) -> None:
    require_kubevirt_schema()
    manifests = [_case(tmp_path, name)[1] for name in CASES]
    for name, errors in zip(CASES, validate_virtual_machines(manifests)):
        assert not errors, f"{name}:\n" + "\n".join(errors)


def test_manifest_carries_the_decided_hardware(tmp_path: Path) -> None:
    _output, vm, steps = _case(tmp_path, "bios-two-nics")
    assert vm["apiVersion"] == "kubevirt.io/v1" and vm["kind"] == "VirtualMachine"
    assert vm["metadata"]["name"] == "web01" and vm["spec"]["runStrategy"] == "Halted"
    spec = vm["spec"]["template"]["spec"]
    domain = spec["domain"]
    assert domain["firmware"] == {"bootloader": {"bios": {}}}
    assert domain["cpu"] == {"sockets": 2, "cores": 2, "threads": 1}
    assert domain["memory"] == {"guest": "2048Mi"} and domain["resources"]["requests"]["memory"] == "2048Mi"
    assert domain["machine"] == {"type": "q35"}
    # clock and features belong to the domain (virt-v2v puts them under resources)
    assert domain["clock"]["utc"] == {} and domain["clock"]["timer"]["hpet"] == {"present": False}
    assert "smm" not in domain["features"] and "clock" not in domain["resources"]
    assert domain["devices"]["disks"] == [{"name": "vda", "disk": {"bus": "virtio"}, "bootOrder": 1},
                                          {"name": "vdb", "disk": {"bus": "virtio"}, "bootOrder": 2}]
    assert spec["volumes"] == [{"name": "vda", "persistentVolumeClaim": {"claimName": "web01-vda"}},
                               {"name": "vdb", "persistentVolumeClaim": {"claimName": "web01-vdb"}}]
    # the first (unmapped) NIC is on the pod network, the mapped one on its Multus network; MACs kept
    assert domain["devices"]["interfaces"] == [
        {"name": "net0", "masquerade": {}, "macAddress": "00:50:56:aa:bb:01", "model": "virtio"},
        {"name": "net1", "bridge": {}, "macAddress": "00:50:56:aa:bb:02", "model": "virtio"}]
    assert spec["networks"] == [{"name": "net0", "pod": {}},
                                {"name": "net1", "multus": {"networkName": "tenant-a/backend"}}]
    assert any("web01-vda, web01-vdb" in step for step in steps)


def test_uefi_secure_boot_gets_smm(tmp_path: Path) -> None:
    domain = _case(tmp_path, "uefi-secure-boot")[1]["spec"]["template"]["spec"]["domain"]
    assert domain["firmware"]["bootloader"] == {"efi": {"secureBoot": True, "persistent": True}}
    assert domain["features"]["smm"] == {"enabled": True}


def test_hostdisk_and_virtio_scsi(tmp_path: Path) -> None:
    output, vm, _steps = _case(tmp_path, "hostdisk-scsi")
    spec = vm["spec"]["template"]["spec"]
    assert spec["volumes"][0] == {"name": "sda", "hostDisk": {"path": "/var/lib/vms/web01-sda.raw", "type": "Disk"}}
    assert spec["domain"]["devices"]["disks"][0]["disk"] == {"bus": "scsi"}
    # no topology from the source: one socket per vCPU, as libvirt does
    assert spec["domain"]["cpu"] == {"sockets": 4, "cores": 1, "threads": 1}
    assert output.uploads == []


def test_named_claims_namespace_and_upload_commands(tmp_path: Path) -> None:
    output, vm, _steps = _case(tmp_path, "pvcs-named-namespace")
    assert vm["metadata"]["namespace"] == "migrated"
    claims = [v["persistentVolumeClaim"]["claimName"] for v in vm["spec"]["template"]["spec"]["volumes"]]
    assert claims == ["root-pvc", "data-pvc"]
    first = output.uploads[0]
    assert first[:4] == ["virtctl", "image-upload", "pvc", "root-pvc"]
    assert f"--image-path={tmp_path}/web01-vda.raw" in first and "--namespace=migrated" in first
    # room for CDI's file system overhead beyond the 8 GiB virtual size
    size = int(next(a for a in first if a.startswith("--size=")).removeprefix("--size=").removesuffix("Mi"))
    assert size > 8 * 1024


def test_windows_gets_hyperv(tmp_path: Path) -> None:
    domain = _case(tmp_path, "windows")[1]["spec"]["template"]["spec"]["domain"]
    assert domain["features"]["hyperv"]["spinlocks"] == {"spinlocks": 8191}
    assert domain["clock"]["timer"]["hyperv"] == {}


def test_yaml_reads_back_as_the_manifest(tmp_path: Path) -> None:
    for name in CASES:
        vm = _case(tmp_path, name)[1]
        text = to_yaml(vm, comment=["a comment: with colons", "  virtctl image-upload pvc x"])
        assert yaml.safe_load(text) == vm
    tricky = {"a": ["yes", "no", "on", "1", "1.5", "", "x: y", "#c", "null", "-", "ok"], "b": {}, "c": [],
              "d": [{"e": [1, True]}, [2]]}
    assert yaml.safe_load(to_yaml(tricky)) == tricky


@pytest.mark.parametrize(("source_changes", "options", "match"), [
    (dict(name="Web_01"), dict(), "cannot name a KubeVirt VirtualMachine"),
    (dict(), dict(output_options={"kubevirt_volume": "iscsi"}), "kubevirt_volume 'iscsi'"),
    (dict(), dict(output_options={"kubevirt_pvcs": ["only-one"]}), "names 1 claims for 2 disks"),
    (dict(), dict(output_options={"kubevirt_pvcs": ["Bad_Name", "x"]}), "not a valid PersistentVolumeClaim"),
    (dict(), dict(output_options={"kubevirt_namespace": "My NS"}), "not a valid Kubernetes namespace"),
    (dict(), dict(networks={"*": "Not Valid!"}), "neither 'pod' nor a Multus"),
    (dict(), dict(bridges={"*": "br0"}), "bridges has no meaning"),
    (dict(), dict(networks={"VM Network": "pod", "Backend": "pod"}), "at most one"),
    (dict(), dict(output_options={"kubevirt_hostdisk_dir": "/x"}), "kubevirt_hostdisk_dir"),
])
def test_refused_options_say_what_to_do(tmp_path: Path, source_changes, options, match) -> None:
    with pytest.raises(OutputError, match=match) as err:
        _manifest(tmp_path, _source(**source_changes), **options)
    assert err.value.hint


def test_output_dir_is_required() -> None:
    with pytest.raises(OutputError, match="output 'kubevirt' needs output_dir"):
        output_for(ConvertOptions(output="kubevirt"))
