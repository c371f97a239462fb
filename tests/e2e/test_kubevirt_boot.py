"""output kubevirt end to end: the VMware-style Debian guest converted to disks + a VirtualMachine manifest.

Through ansible-playbook with the idempotency protocol (check → real → verify → check → real). Verified:
the manifest file validates against KubeVirt's API types, it names the disk that was written and the
guest's MAC, and that disk BOOTS under qemu on virtio with the original static address (the guest's own
marker line). The source is hashed before and after.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.e2e.test_convert_vmware import assert_boots_on_virtio
from tests.hashing import tree_hashes
from tests.kubevirt_schema import require_kubevirt_schema, validate_virtual_machine_file
from tests.playbook import run_tasks

pytestmark = pytest.mark.e2e

NAME = "debian-vmware"


def test_kubevirt_output_validates_boots_and_is_idempotent(vmware_guest_most, tmp_path: Path) -> None:
    require_kubevirt_schema()
    guest = vmware_guest_most
    sources = tree_hashes(guest.ova)
    out = tmp_path / "out"
    task = {"kvmigrate.v2v.convert_guest": {
        "input": "ova", "path": str(guest.ova), "output": "kubevirt", "output_dir": str(out), "name": NAME,
        "output_format": "qcow2", "work_dir": str(tmp_path / "work"), "kubevirt_namespace": "migrated"}}
    first = run_tasks([{"name": "check", **task, "register": "check1", "check_mode": True},
                       {"name": "real", **task, "register": "real1"}], tmp_path)
    assert first.rc == 0, first.output
    check1, real1 = first.results["check1"], first.results["real1"]
    assert check1["changed"] is True and not check1.get("failed"), check1.get("msg")
    assert any(f"{NAME}.yaml" in step and f"{NAME}-vda" in step for step in check1["plan"]["steps"])
    assert real1["changed"] is True and not real1.get("failed"), real1.get("msg")

    target = real1["target"]
    manifest_path = Path(target["manifest_path"])
    assert manifest_path == out / f"{NAME}.yaml"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{NAME}-vda.qcow2", f"{NAME}.yaml", f".{NAME}.kvmigrate.json"])
    errors = validate_virtual_machine_file(manifest_path)
    assert not errors, "\n".join(errors)
    vm = yaml.safe_load(manifest_path.read_text())
    assert vm == target["manifest"]
    assert vm["metadata"] == {**vm["metadata"], "name": NAME, "namespace": "migrated"}
    spec = vm["spec"]["template"]["spec"]
    assert spec["volumes"] == [{"name": "vda", "persistentVolumeClaim": {"claimName": f"{NAME}-vda"}}]
    assert spec["domain"]["devices"]["interfaces"][0]["macAddress"] == guest.mac.lower()
    assert spec["networks"] == [{"name": "net0", "pod": {}}]
    disk = target["disks"][0]
    assert disk["path"] == str(out / f"{NAME}-vda.qcow2") and disk["format"] == "qcow2"
    assert target["upload_commands"] == [
        f"virtctl image-upload pvc {NAME}-vda --size={vm_size_mi(target)}Mi --image-path={disk['path']} "
        "--namespace=migrated"]
    assert "virtctl image-upload" in manifest_path.read_text().split("---")[0]

    assert_boots_on_virtio(guest, [disk["path"]], root="/dev/vda1", fmt="qcow2")

    second = run_tasks([{"name": "check", **task, "register": "check2", "check_mode": True},
                        {"name": "real", **task, "register": "real2"}], tmp_path)
    assert second.rc == 0, second.output
    assert second.results["check2"]["changed"] is False
    real2 = second.results["real2"]
    assert real2["changed"] is False and [p["name"] for p in real2["phases"]] == ["open"]
    assert real2["target"]["manifest_path"] == str(manifest_path)
    assert tree_hashes(guest.ova) == sources


def vm_size_mi(target: dict) -> int:
    command = target["upload_commands"][0].split()
    return int(next(a for a in command if a.startswith("--size=")).removeprefix("--size=").removesuffix("Mi"))
