# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``output: kubevirt``: the converted disks and a KubeVirt ``VirtualMachine`` manifest in ``output_dir``.

Files: ``<name>-vda.<format>`` (one per disk), ``<name>.yaml`` (apiVersion
``kubevirt.io/v1``, kind ``VirtualMachine``) and the idempotency record.
The manifest serializes the same :class:`TargetHardware` as the libvirt XML:
firmware (BIOS, or EFI with secure boot and SMM), CPU topology, memory, q35,
clock and timers, the disks on virtio (or virtio-scsi: bus ``scsi``) in boot
order, and one interface per source NIC with its original MAC.

Options (``output_options``):

- ``kubevirt_volume``: ``pvc`` (default) — every disk is a
  PersistentVolumeClaim, named by ``kubevirt_pvcs`` (one name per disk) or
  ``<name>-<dev>``; the manifest's header and the result's
  ``upload_commands`` say how to fill them (``virtctl image-upload``).
  ``hostdisk`` — every disk is a ``hostDisk`` at ``kubevirt_hostdisk_dir``
  (default ``output_dir``) on the node (needs KubeVirt's HostDisk feature gate).
- ``kubevirt_namespace``: ``metadata.namespace`` of the VM (and of the upload commands).
- ``networks`` maps a source network/bridge name or a MAC (or ``*``) to
  ``pod`` (the pod network, masquerade binding) or to a Multus network
  (``namespace/name`` of a NetworkAttachmentDefinition, bridge binding).
  Unmapped NICs: the first one goes to the pod network; a second unmapped
  NIC is an error (a VM has at most one pod network).

The VM is created halted (``runStrategy: Halted``): its disks must be uploaded first.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import OutputError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import TargetDisk
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.base import FileOutput, OutputJob, disk_dev
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.target import (
    DomainOptions,
    NICMapping,
    TargetHardware,
    map_nic,
    normalize_mac,
)

API_VERSION = "kubevirt.io/v1"
VOLUME_KINDS = ("pvc", "hostdisk")
POD_NETWORK = "pod"
MANAGED_BY = "kvmigrate.v2v"
# CDI keeps a filesystem volume's image on a file system: the claim needs room for its overhead (5.5 % by default).
_CDI_OVERHEAD = 1.06
_MIB = 1024 * 1024
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# ``namespace/name`` (or just ``name``) of a NetworkAttachmentDefinition.
_MULTUS_RE = re.compile(r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_PLAIN_RE = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./-]*$")
_YAML_WORDS = {"y", "yes", "n", "no", "true", "false", "on", "off", "null", "~"}


def dns_label(value: str) -> bool:
    """True when ``value`` is an RFC 1123 label (lowercase alphanumerics and '-', at most 63)."""
    return bool(_DNS_LABEL_RE.match(value))


def suggest_label(value: str) -> str:
    """A DNS label close to ``value``, for error hints."""
    label = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")[:63].strip("-")
    return label or "guest"


def network_of(mapping: NICMapping) -> str:
    """Where a NIC goes in KubeVirt: ``pod``, or the Multus network ``networks`` mapped it to.

    A NIC nothing in ``networks`` matched goes to the pod network.
    """
    return mapping.name if mapping.rule not in ("unmapped", "default_network") else POD_NETWORK


class KubevirtOutput(FileOutput):
    kind = "kubevirt"

    # -- options ---------------------------------------------------------------------------
    def validate(self) -> None:
        super().validate()
        volume = self.option("kubevirt_volume", "pvc")
        if volume not in VOLUME_KINDS:
            raise OutputError(f"kubevirt_volume {volume!r} is not supported",
                              hint=f"Use one of: {', '.join(VOLUME_KINDS)}")
        namespace = self.option("kubevirt_namespace")
        if namespace is not None and not dns_label(str(namespace)):
            raise OutputError(f"kubevirt_namespace {namespace!r} is not a valid Kubernetes namespace",
                              hint=f"Use lowercase letters, digits and '-', e.g. {suggest_label(str(namespace))!r}")
        pvcs = self.option("kubevirt_pvcs", [])
        if not isinstance(pvcs, list) or not all(isinstance(p, str) for p in pvcs):
            raise OutputError("kubevirt_pvcs must be a list of PersistentVolumeClaim names")
        for claim in pvcs:
            if not dns_label(claim):
                raise OutputError(f"kubevirt_pvcs: {claim!r} is not a valid PersistentVolumeClaim name",
                                  hint=f"Use lowercase letters, digits and '-', e.g. {suggest_label(claim)!r}")
        if len(set(pvcs)) != len(pvcs):
            raise OutputError("kubevirt_pvcs names the same claim twice", hint="Give each disk its own claim")
        if volume != "pvc" and pvcs:
            raise OutputError("kubevirt_pvcs is only used with kubevirt_volume: pvc",
                              hint="Drop kubevirt_pvcs, or set kubevirt_volume: pvc")
        host_dir = self.option("kubevirt_hostdisk_dir")
        if host_dir is not None and (volume != "hostdisk" or not os.path.isabs(str(host_dir))):
            raise OutputError("kubevirt_hostdisk_dir must be an absolute path, used with kubevirt_volume: hostdisk",
                              hint="Set kubevirt_volume: hostdisk and an absolute directory on the node")
        for key, value in self.options.networks.items():
            if value != POD_NETWORK and not _MULTUS_RE.match(value):
                raise OutputError(f"networks: {key!r} maps to {value!r}, which is neither 'pod' nor a Multus "
                                  "network name", hint="Map to 'pod' or to 'namespace/name' of a "
                                                       "NetworkAttachmentDefinition")
        if self.options.bridges:
            raise OutputError("bridges has no meaning for output kubevirt",
                              hint="Map NICs with networks: to 'pod' or to a Multus network")

    def fingerprint_fields(self) -> dict[str, Any]:
        return {k: self.option(k) for k in ("kubevirt_volume", "kubevirt_pvcs", "kubevirt_namespace",
                                            "kubevirt_hostdisk_dir")}

    def check(self, job: OutputJob) -> None:
        super().check(job)
        name = job.name
        if not dns_label(name):
            raise OutputError(f"{name!r} cannot name a KubeVirt VirtualMachine (an RFC 1123 label is needed)",
                              subject=job.source.name, hint=f"Set name to lowercase letters, digits and '-', "
                                                            f"e.g. name: {suggest_label(name)}")
        given = self.option("kubevirt_pvcs", [])
        count = len(job.source.disks)
        if given and len(given) != count:
            raise OutputError(f"kubevirt_pvcs names {len(given)} claims for {count} disks",
                              subject=job.source.name, hint="Give one claim name per disk, in the disks' order")
        for claim in self._claims(name, count):
            if not dns_label(claim):
                raise OutputError(f"the claim name {claim!r} is longer than 63 characters", subject=job.source.name,
                                  hint="Use a shorter name, or give kubevirt_pvcs")
        # At most one pod network: found now, before the appliance starts.
        options = DomainOptions(networks=dict(self.options.networks))
        on_pod = [i for i, nic in enumerate(job.source.nics) if network_of(map_nic(nic, options)) == POD_NETWORK]
        if len(on_pod) > 1:
            raise OutputError(f"NICs {', '.join(str(i) for i in on_pod)} would all be on the pod network, "
                              "and a VirtualMachine has at most one", subject=job.source.name,
                              hint="Map all but one NIC to Multus networks with networks: "
                                   "{'<source network or MAC>': 'namespace/name'}")

    def _claims(self, name: str, count: int) -> list[str]:
        given = list(self.option("kubevirt_pvcs", []))
        return [given[i] if i < len(given) else f"{name}-{disk_dev(i, self.options.block_driver)}"
                for i in range(count)]

    # -- the run ---------------------------------------------------------------------------
    def file_names(self, job: OutputJob) -> list[str]:
        return [f"{job.name}.yaml"]

    def prepare_files(self, job: OutputJob, hardware: TargetHardware) -> list[str]:
        # check(job) ran when the source was opened: names, claims and the one pod network are known good.
        self.manifest = self.build_manifest(job, hardware)
        self.uploads = self.upload_commands(job, hardware.disks)
        path = os.path.join(self.output_dir, f"{job.name}.yaml")
        volume = self.option("kubevirt_volume", "pvc")
        where = "PersistentVolumeClaims " + ", ".join(self._claims(job.name, len(hardware.disks))) \
            if volume == "pvc" else "hostDisk volumes"
        return [f"write the KubeVirt VirtualMachine manifest {path} (disks as {where})"]

    def build_manifest(self, job: OutputJob, hw: TargetHardware) -> dict[str, Any]:
        """The VirtualMachine as a dict (``kubevirt.io/v1``)."""
        disks, volumes = self._disks_and_volumes(job, hw)
        interfaces, networks = self._interfaces_and_networks(hw)
        if hw.firmware == "uefi":
            bootloader: dict[str, Any] = {"efi": {"secureBoot": hw.secure_boot, "persistent": True}}
        else:
            bootloader = {"bios": {}}
        features: dict[str, Any] = {"acpi": {}, "apic": {}}
        if hw.secure_boot:
            features["smm"] = {"enabled": True}
        timers: dict[str, Any] = {"rtc": {"tickPolicy": "catchup"}, "pit": {"tickPolicy": "delay"},
                                  "hpet": {"present": False}}
        if hw.hyperv or hw.windows:
            features["hyperv"] = {"relaxed": {}, "vapic": {}, "spinlocks": {"spinlocks": 8191}}
            timers["hyperv"] = {}
        sockets, cores, threads = hw.topology or (hw.vcpus, 1, 1)
        memory = f"{hw.memory_mb}Mi"
        domain: dict[str, Any] = {
            "machine": {"type": hw.machine},
            "firmware": {"bootloader": bootloader},
            "features": features,
            "clock": {"utc": {}, "timer": timers},
            "cpu": {"sockets": sockets, "cores": cores, "threads": threads},
            "memory": {"guest": memory},
            "resources": {"requests": {"memory": memory}},
            "devices": {"disks": disks, "interfaces": interfaces, "rng": {},
                        "autoattachGraphicsDevice": hw.graphics, "autoattachSerialConsole": True},
        }
        metadata: dict[str, Any] = {"name": job.name}
        namespace = self.option("kubevirt_namespace")
        if namespace:
            metadata["namespace"] = namespace
        metadata["labels"] = {"app.kubernetes.io/managed-by": MANAGED_BY}
        annotations = {"kvmigrate.v2v/source-name": job.source.name,
                       "kvmigrate.v2v/source-hypervisor": job.source.hypervisor,
                       "kvmigrate.v2v/source-input": job.source.input}
        guest = hw.guest
        if guest is not None:
            described = " ".join(str(v) for v in (guest.os_type, guest.distro, guest.version) if v)
            if described:
                annotations["kvmigrate.v2v/guest-os"] = described
        metadata["annotations"] = annotations
        return {
            "apiVersion": API_VERSION,
            "kind": "VirtualMachine",
            "metadata": metadata,
            "spec": {
                "runStrategy": "Halted",
                "template": {
                    "metadata": {"labels": {"kubevirt.io/domain": job.name}},
                    "spec": {"domain": domain, "networks": networks, "volumes": volumes,
                             "terminationGracePeriodSeconds": 180},
                },
            },
        }

    def _disks_and_volumes(self, job: OutputJob, hw: TargetHardware) -> tuple[list[Any], list[Any]]:
        bus = "scsi" if hw.scsi else "virtio"
        claims = self._claims(job.name, len(hw.disks))
        host_dir = self.option("kubevirt_hostdisk_dir", self.output_dir)
        disks, volumes = [], []
        for index, disk in enumerate(hw.disks):
            name = hw.disk_dev(index)
            disks.append({"name": name, "disk": {"bus": bus}, "bootOrder": index + 1})
            if self.option("kubevirt_volume", "pvc") == "pvc":
                volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claims[index]}})
            else:
                volumes.append({"name": name, "hostDisk": {"path": os.path.join(host_dir, os.path.basename(disk.path)),
                                                           "type": "Disk"}})
        return disks, volumes

    def _interfaces_and_networks(self, hw: TargetHardware) -> tuple[list[Any], list[Any]]:
        interfaces, networks = [], []
        for index, nic in enumerate(hw.nics):
            name = f"net{index}"
            target = network_of(nic.mapping)
            interface: dict[str, Any] = {"name": name}
            if target == POD_NETWORK:
                interface["masquerade"] = {}
                networks.append({"name": name, "pod": {}})
            else:
                interface["bridge"] = {}
                networks.append({"name": name, "multus": {"networkName": target}})
            if nic.source.mac:
                interface["macAddress"] = normalize_mac(nic.source.mac)
            interface["model"] = nic.model
            interfaces.append(interface)
        return interfaces, networks

    def upload_commands(self, job: OutputJob, disks: list[TargetDisk]) -> list[list[str]]:
        """``virtctl image-upload`` argv per disk (PVC volumes only)."""
        if self.option("kubevirt_volume", "pvc") != "pvc":
            return []
        namespace = self.option("kubevirt_namespace")
        commands = []
        claims = self._claims(job.name, len(disks))
        for index, disk in enumerate(disks):
            claim = claims[index]
            size = max(1, math.ceil(disk.size_bytes * _CDI_OVERHEAD / _MIB))
            argv = ["virtctl", "image-upload", "pvc", claim, f"--size={size}Mi", f"--image-path={disk.path}"]
            if namespace:
                argv.append(f"--namespace={namespace}")
            commands.append(argv)
        return commands

    def write_files(self, job: OutputJob, disks: list[TargetDisk]) -> dict[str, Any]:
        path = os.path.join(self.output_dir, f"{job.name}.yaml")
        header = [f"KubeVirt VirtualMachine for {job.source.name}, written by {MANAGED_BY}."]
        if self.uploads:
            header += ["Upload the disks into their PersistentVolumeClaims first (CDI), then apply this file:"]
            header += ["  " + shlex.join(argv) for argv in self.uploads]
            header += [f"  kubectl apply -f {os.path.basename(path)}"]
        else:
            header += ["The disks are hostDisk volumes: copy them to the same path on the node "
                       "(KubeVirt's HostDisk feature gate must be on)."]
        self.write_part(path, to_yaml(self.manifest, comment=header))
        return {"manifest_path": path, "manifest": self.manifest,
                "upload_commands": [shlex.join(argv) for argv in self.uploads]}


# --- a small, deterministic YAML writer (the manifest holds only dicts, lists, str, int, bool) -----------------

def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if value is None:
        return "null"
    text = str(value)
    if _PLAIN_RE.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text)


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            label = f"{pad}{_scalar(key)}:"
            if isinstance(item, (dict, list)) and item:
                out.append(label)
                out += _lines(item, indent + 2)
            else:
                out.append(f"{label} {_inline(item)}")
    else:
        for item in value:
            if isinstance(item, (dict, list)) and item:
                nested = _lines(item, indent + 2)
                out.append(f"{pad}- {nested[0].lstrip()}")
                out += nested[1:]
            else:
                out.append(f"{pad}- {_inline(item)}")
    return out


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def to_yaml(data: dict[str, Any], *, comment: list[str] | None = None) -> str:
    """YAML text for ``data`` (block style; strings quoted where YAML would read them otherwise)."""
    head = [f"# {line}".rstrip() for line in comment or []]
    return "\n".join([*head, "---", *_lines(data, 0)]) + "\n"
