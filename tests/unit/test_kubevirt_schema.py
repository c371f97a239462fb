"""The KubeVirt VirtualMachine validator (tests/kubevirt_schema.py) against KubeVirt's API types."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import kubevirt_schema
from tests.kubevirt_schema import (
    check_virtual_machines,
    require_kubevirt_schema,
    validate_virtual_machine_file,
)

pytestmark = pytest.mark.unit

Manifest = dict[str, Any]


def uefi_windows_vm() -> Manifest:
    """What `output: kubevirt` writes for a UEFI Secure Boot guest on hostDisk, pod + multus networks."""
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "win2019", "labels": {"kvmigrate.io/source": "vmware"}},
        "spec": {
            "runStrategy": "Halted",
            "template": {
                "metadata": {"labels": {"kubevirt.io/vm": "win2019"}},
                "spec": {
                    "domain": {
                        "firmware": {"bootloader": {"efi": {"secureBoot": True, "persistent": True}}},
                        "features": {
                            "smm": {"enabled": True},
                            "acpi": {},
                            "apic": {},
                            "hyperv": {"relaxed": {}, "vapic": {}, "spinlocks": {"spinlocks": 8191}},
                        },
                        "clock": {
                            "utc": {},
                            "timer": {
                                "hpet": {"present": False},
                                "pit": {"tickPolicy": "delay"},
                                "rtc": {"tickPolicy": "catchup"},
                                "hyperv": {},
                            },
                        },
                        "cpu": {"sockets": 1, "cores": 2, "threads": 1},
                        "memory": {"guest": "4096Mi"},
                        "resources": {"requests": {"memory": "4096Mi"}},
                        "devices": {
                            "disks": [
                                {"name": "disk-1", "disk": {"bus": "virtio"}, "bootOrder": 1},
                                {"name": "disk-2", "disk": {"bus": "sata"}},
                            ],
                            "interfaces": [
                                {"name": "default", "masquerade": {}, "model": "virtio"},
                                {"name": "net-1", "bridge": {}, "macAddress": "52:54:00:12:34:56", "model": "e1000e"},
                            ],
                            "rng": {},
                            "sound": {"name": "sound", "model": "ich9"},
                        },
                    },
                    "networks": [
                        {"name": "default", "pod": {}},
                        {"name": "net-1", "multus": {"networkName": "migrated/vlan10", "default": False}},
                    ],
                    "volumes": [
                        {"name": "disk-1", "hostDisk": {"path": "/var/lib/kvm/win2019-sda", "type": "Disk"}},
                        {
                            "name": "disk-2",
                            "hostDisk": {"path": "/var/lib/kvm/win2019-b", "type": "DiskOrCreate", "capacity": "20Gi"},
                        },
                    ],
                    "terminationGracePeriodSeconds": 0,
                },
            },
        },
    }


def bios_linux_vm() -> Manifest:
    """A BIOS guest on a PersistentVolumeClaim, started with `running`."""
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "web-01"},
        "spec": {
            "running": True,
            "template": {
                "spec": {
                    "domain": {
                        "firmware": {"bootloader": {"bios": {}}},
                        "cpu": {"cores": 2},
                        "resources": {"requests": {"memory": "2Gi"}},
                        "devices": {
                            "disks": [{"name": "root", "disk": {"bus": "virtio"}, "bootOrder": 1}],
                            "interfaces": [{"name": "default", "masquerade": {}}],
                        },
                    },
                    "networks": [{"name": "default", "pod": {}}],
                    "volumes": [{"name": "root", "persistentVolumeClaim": {"claimName": "web-01-root"}}],
                    "terminationGracePeriodSeconds": 180,
                },
            },
        },
    }


def _domain(m: Manifest) -> dict[str, Any]:
    return m["spec"]["template"]["spec"]["domain"]


def _vmi(m: Manifest) -> dict[str, Any]:
    return m["spec"]["template"]["spec"]


def _changed(change: Callable[[Manifest], object], base: Callable[[], Manifest] = uefi_windows_vm) -> Manifest:
    manifest = copy.deepcopy(base())
    change(manifest)
    return manifest


DOMAIN = "spec.template.spec.domain"


def _network_name_without_multus(m: Manifest) -> None:
    # virt-v2v writes networks[{networkName, name}]; KubeVirt wants networks[{name, multus: {networkName}}].
    network = _vmi(m)["networks"][1]
    network["networkName"] = network.pop("multus")["networkName"]


# name -> (manifest, path of the error, fragment of its message)
BAD: dict[str, tuple[Manifest, str, str]] = {
    # virt-v2v's -o kubevirt puts clock and features under resources and writes cpu.thread.
    "clock under resources": (
        _changed(lambda m: _domain(m)["resources"].update(clock=_domain(m).pop("clock"))),
        f"{DOMAIN}.resources.clock",
        'unknown field "clock" in V1ResourceRequirements',
    ),
    "features under resources": (
        _changed(lambda m: _domain(m)["resources"].update(features={"acpi": {}}), bios_linux_vm),
        f"{DOMAIN}.resources.features",
        'unknown field "features"',
    ),
    "cpu.thread": (
        _changed(lambda m: _domain(m)["cpu"].update(thread=_domain(m)["cpu"].pop("threads"))),
        f"{DOMAIN}.cpu.thread",
        'did you mean "threads"?',
    ),
    "misspelled bootOrder": (
        _changed(lambda m: _domain(m)["devices"]["disks"][0].update(bootorder=1)),
        f"{DOMAIN}.devices.disks[0].bootorder",
        'did you mean "bootOrder"?',
    ),
    "misspelled macAddress": (
        _changed(lambda m: _domain(m)["devices"]["interfaces"][1].update(macAdress="52:54:00:00:00:01")),
        f"{DOMAIN}.devices.interfaces[1].macAdress",
        'did you mean "macAddress"?',
    ),
    "networkName at network level": (
        _changed(_network_name_without_multus),
        "spec.template.spec.networks[1].networkName",
        'unknown field "networkName" in V1Network',
    ),
    "cores as a string": (
        _changed(lambda m: _domain(m)["cpu"].update(cores="2")),
        f"{DOMAIN}.cpu.cores",
        'expected number, got string "2"',
    ),
    "memory as a number": (
        _changed(lambda m: _domain(m)["resources"]["requests"].update(memory=4096)),
        f"{DOMAIN}.resources.requests.memory",
        "expected string, got number",
    ),
    "running as a string": (
        _changed(lambda m: m["spec"].update(running="true"), bios_linux_vm),
        "spec.running",
        "expected boolean",
    ),
    "bios null": (
        _changed(lambda m: _domain(m)["firmware"]["bootloader"].update(bios=None), bios_linux_vm),
        f"{DOMAIN}.firmware.bootloader.bios",
        "null is not allowed",
    ),
    "disks not a list": (
        _changed(lambda m: _domain(m)["devices"].update(disks={"name": "disk-1"})),
        f"{DOMAIN}.devices.disks",
        "expected a list",
    ),
    "volume without name": (
        _changed(lambda m: _vmi(m)["volumes"][0].pop("name")),
        "spec.template.spec.volumes[0].name",
        "required field of V1Volume is missing",
    ),
    "hostDisk without type": (
        _changed(lambda m: _vmi(m)["volumes"][0]["hostDisk"].pop("type")),
        "spec.template.spec.volumes[0].hostDisk.type",
        "required field of V1HostDisk is missing",
    ),
    "hostDisk type lower case": (
        _changed(lambda m: _vmi(m)["volumes"][0]["hostDisk"].update(type="disk")),
        "spec.template.spec.volumes[0].hostDisk.type",
        "is not one of Disk, DiskOrCreate",
    ),
    "ide bus": (
        _changed(lambda m: _domain(m)["devices"]["disks"][0]["disk"].update(bus="ide")),
        f"{DOMAIN}.devices.disks[0].disk.bus",
        "is not one of virtio, sata, scsi, usb",
    ),
    "nic model": (
        _changed(lambda m: _domain(m)["devices"]["interfaces"][1].update(model="vmxnet3")),
        f"{DOMAIN}.devices.interfaces[1].model",
        "is not one of",
    ),
    "memory not a quantity": (
        _changed(lambda m: _domain(m)["resources"]["requests"].update(memory="4 GB")),
        f"{DOMAIN}.resources.requests.memory",
        "not a Kubernetes quantity",
    ),
    "runStrategy lower case": (
        _changed(lambda m: m["spec"].update(runStrategy="always")),
        "spec.runStrategy",
        "is not one of Always",
    ),
    "running and runStrategy": (
        _changed(lambda m: m["spec"].update(runStrategy="Always"), bios_linux_vm),
        "spec.runStrategy",
        "mutually exclusive",
    ),
    "multus _default": (
        _changed(lambda m: _vmi(m)["networks"][1]["multus"].update(_default=True)),
        "spec.template.spec.networks[1].multus._default",
        'did you mean "default"?',
    ),
    "secure boot without smm": (
        _changed(lambda m: _domain(m)["features"].pop("smm")),
        f"{DOMAIN}.features.smm",
        "needs features.smm enabled",
    ),
    "efi defaults to secure boot": (
        _changed(lambda m: _domain(m)["firmware"]["bootloader"].update(efi={}), bios_linux_vm),
        f"{DOMAIN}.features.smm",
        "needs features.smm enabled",
    ),
    "old apiVersion": (
        _changed(lambda m: m.update(apiVersion="kubevirt.io/v1alpha3")),
        "apiVersion",
        "is not one of kubevirt.io/v1",
    ),
    "no name": (
        _changed(lambda m: m["metadata"].pop("name")),
        "metadata.name",
        "needs this field",
    ),
    # PyYAML reads an unquoted MAC address as a base-60 integer.
    "unquoted MAC in YAML": (
        yaml.safe_load(yaml.safe_dump(uefi_windows_vm()).replace("'52:54:00:12:34:56'", "52:54:00:12:34:56")),
        f"{DOMAIN}.devices.interfaces[1].macAddress",
        "expected string, got number",
    ),
}

# Single mistakes the TypeScript compiler's own check must also find: name -> the compiler's path (a missing
# field is reported at its object).
COMPILER_FINDS = {
    "clock under resources": f"{DOMAIN}.resources.clock",
    "features under resources": f"{DOMAIN}.resources.features",
    "cpu.thread": f"{DOMAIN}.cpu.thread",
    "misspelled bootOrder": f"{DOMAIN}.devices.disks[0].bootorder",
    "cores as a string": f"{DOMAIN}.cpu.cores",
    "memory as a number": f"{DOMAIN}.resources.requests.memory",
    "volume without name": "spec.template.spec.volumes[0]",
}

GOOD: dict[str, Manifest] = {
    "uefi windows": uefi_windows_vm(),
    "bios linux": bios_linux_vm(),
    "uefi without secure boot": _changed(
        lambda m: _domain(m)["firmware"]["bootloader"].update(efi={"secureBoot": False, "persistent": True}),
        bios_linux_vm,
    ),
}


def _several_mistakes() -> Manifest:
    manifest = uefi_windows_vm()
    _domain(manifest)["resources"].update(clock=_domain(manifest).pop("clock"), memory=1)
    _domain(manifest)["cpu"].update(thread=_domain(manifest)["cpu"].pop("threads"))
    return manifest


@pytest.fixture(scope="module")
def results() -> dict[str, tuple[list[str], list[str]]]:
    """(walk errors, compiler errors) of every manifest here, from one run of the validator."""
    require_kubevirt_schema()
    cases = {**GOOD, **{name: case[0] for name, case in BAD.items()}, "several mistakes": _several_mistakes()}
    return dict(zip(cases, check_virtual_machines(list(cases.values()))))


@pytest.mark.parametrize("name", list(GOOD))
def test_good_manifest_is_valid(results: dict[str, tuple[list[str], list[str]]], name: str):
    assert results[name] == ([], [])


@pytest.mark.parametrize("name", list(BAD))
def test_bad_manifest_fails_at_its_path(results: dict[str, tuple[list[str], list[str]]], name: str):
    path, fragment = BAD[name][1:]
    errors = results[name][0]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{path}: "), errors
    assert fragment in errors[0], errors


@pytest.mark.parametrize("name", list(COMPILER_FINDS))
def test_compiler_check_agrees(results: dict[str, tuple[list[str], list[str]]], name: str):
    compiler = results[name][1]
    assert [e.split(": ", 1)[0] for e in compiler] == [COMPILER_FINDS[name]], compiler


def test_every_mistake_is_reported_not_only_the_first(results: dict[str, tuple[list[str], list[str]]]):
    errors = results["several mistakes"][0]
    paths = sorted(e.split(": ", 1)[0] for e in errors)
    assert paths == [f"{DOMAIN}.cpu.thread", f"{DOMAIN}.resources.clock", f"{DOMAIN}.resources.memory"]


def test_validate_file(tmp_path: Path):
    require_kubevirt_schema()
    path = tmp_path / "win2019.yaml"
    path.write_text("---\n" + yaml.safe_dump(uefi_windows_vm()) + "---\n" + yaml.safe_dump(bios_linux_vm()))
    assert validate_virtual_machine_file(path) == [
        f"(file): {path} holds 2 YAML documents, expected one VirtualMachine"
    ]
    path.write_text(yaml.safe_dump(BAD["cpu.thread"][0]))
    (error,) = validate_virtual_machine_file(path)
    assert error.startswith(f"{DOMAIN}.cpu.thread: ")


def test_missing_tooling_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(kubevirt_schema, "STAMP", tmp_path / "absent")
    problem = kubevirt_schema.tooling_problem()
    assert problem is not None
    assert "make setup" in problem
    with pytest.raises(kubevirt_schema.KubevirtSchemaUnavailable, match="make setup"):
        kubevirt_schema.validate_virtual_machine(uefi_windows_vm())
