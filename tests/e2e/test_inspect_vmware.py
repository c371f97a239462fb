"""inspect_guest on the real VMware-style Debian guest, in its three forms: OVA, VMX and raw disk.

Through ansible-playbook, as users run it: each form reports Debian 12 with
open-vm-tools, the static address on ens192 and no virtio in the initramfs;
OVA and VMX describe the same machine; nothing was written to any source.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hashing import tree_hashes
from tests.playbook import run_tasks

pytestmark = pytest.mark.e2e

# The facts both VMware exports must agree on (paths and formats differ by design).
SAME_FACTS = ("name", "hypervisor", "memory_mb", "vcpus", "firmware", "secure_boot")


def _inspect(tmp_path: Path, **source) -> dict:
    run = run_tasks([{"name": "inspect", "kvmigrate.v2v.inspect_guest": {**source, "work_dir": str(tmp_path / "work")},
                      "register": "facts"}], tmp_path)
    facts = run.results["facts"]
    assert run.rc == 0 and not facts.get("failed"), facts.get("msg", run.output)
    assert facts["changed"] is False
    return facts


def _assert_guest(facts: dict, guest) -> None:
    info = facts["guest"]
    assert (info["distro"], info["major_version"]) == ("debian", 12)
    assert info["hostname"] == guest.hostname
    assert "vmware:open-vm-tools" in info["hypervisor_tools"]
    static = [n for n in info["network"] if n["method"] == "static"]
    assert static and static[0]["interface"] == guest.nic and guest.address in static[0]["addresses"]
    kernels = info["kernels"]
    assert kernels and all(k["has_virtio_modules"] for k in kernels)
    assert not any(k["virtio_in_initramfs"] for k in kernels), "the VMware guest's initramfs has no virtio"
    codes = {f["code"]: f["severity"] for f in facts["findings"]}
    assert codes.get("virtio-not-in-initramfs") == "warning"
    assert codes.get("hypervisor-tools") == "warning"
    assert not [c for c, s in codes.items() if s == "blocker"], codes
    assert 0 < facts["estimate"]["estimated_bytes"] <= facts["estimate"]["allocated_bytes"]


def test_ova_vmx_and_raw_forms_agree(vmware_guest, tmp_path: Path) -> None:
    before = {form: tree_hashes(path) for form, path in
              (("ova", vmware_guest.ova), ("vmx", vmware_guest.vmx.parent), ("raw", vmware_guest.raw))}

    ova = _inspect(tmp_path, input="ova", path=str(vmware_guest.ova))
    vmx = _inspect(tmp_path, input="vmx", path=str(vmware_guest.vmx))
    raw = _inspect(tmp_path, input="disk", path=[str(vmware_guest.raw)], format="raw")
    for facts in (ova, vmx, raw):
        _assert_guest(facts, vmware_guest)

    src_ova, src_vmx = ova["source"], vmx["source"]
    assert {k: src_ova[k] for k in SAME_FACTS} == {k: src_vmx[k] for k in SAME_FACTS}
    assert src_ova["name"] == vmware_guest.name and src_ova["hypervisor"] == "vmware"
    assert [(n["mac"].lower(), n["model"]) for n in src_ova["nics"]] == \
        [(n["mac"].lower(), n["model"]) for n in src_vmx["nics"]] == [(vmware_guest.mac.lower(), "vmxnet3")]
    assert [d["size_bytes"] for d in src_ova["disks"]] == [d["size_bytes"] for d in src_vmx["disks"]]
    assert raw["source"]["disks"][0]["size_bytes"] == src_vmx["disks"][0]["size_bytes"]
    assert raw["source"]["hypervisor"] != "vmware"  # a bare disk says nothing about where it came from

    # only metadata: the same source facts without an appliance (disk images are not opened, so no sizes)
    quick = _inspect(tmp_path, input="vmx", path=str(vmware_guest.vmx), inspect_os=False)
    assert quick.get("guest") is None
    assert {k: v for k, v in quick["source"].items() if k != "disks"} == \
        {k: v for k, v in src_vmx.items() if k != "disks"}
    assert [(d["path"], d["bus"]) for d in quick["source"]["disks"]] == \
        [(d["path"], d["bus"]) for d in src_vmx["disks"]]

    after = {form: tree_hashes(path) for form, path in
             (("ova", vmware_guest.ova), ("vmx", vmware_guest.vmx.parent), ("raw", vmware_guest.raw))}
    assert after == before
    assert not list((tmp_path / "work").iterdir()), "inspection left files in the work directory"
