#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: convert_guest
short_description: Convert a foreign guest so it boots on KVM, and write it out
description:
  - Reads a source (disk images, OVA, VMX, libvirt XML), opens every disk through a read-only overlay
    (the source is never written), inspects the guest, stops on any blocker, converts the guest in the
    overlay, trims free space and copies only allocated data to the output.
  - "Linux guest conversion: hypervisor tools removed with the guest's own package manager, virtio drivers
    added to the initramfs of the kernel that boots, block device names rewritten for the target bus
    (fstab, crypttab, resume, GRUB configuration and the generated boot menu, which is regenerated),
    Xen/Hyper-V consoles changed to ttyS0, interface names pinned to the NICs' MAC addresses so static
    network configuration keeps working, stale device caches removed, qemu-guest-agent installed
    (offline when cached, otherwise at first boot), UEFI fallback boot path, SELinux relabel."
  - Windows guests are not converted yet (inspection reports a blocker).
  - Outputs are written under temporary names and moved into place at the end, with a record of the
    source fingerprint and the options; an identical second run returns C(changed=false) without
    starting an appliance. A failed run leaves no output files behind.
  - Progress is written to C(status.json) in a per-guest directory under O(work_dir), readable while
    the module runs (for example under C(async)).
version_added: 0.1.0
author:
  - kvmigrate.v2v contributors (@kvmigrate)
extends_documentation_fragment:
  - kvmigrate.v2v.source
attributes:
  check_mode:
    support: full
    description: Opens, inspects and preflights only; returns RV(plan) and writes nothing.
  diff_mode:
    support: none
    description: Outputs are disk images; the plan is returned instead.
options:
  output:
    description:
      - Where the converted guest goes.
      - V(local) writes disks and a libvirt domain XML to O(output_dir).
      - V(qemu) writes disks and a runnable shell script with the qemu command line to O(output_dir).
      - V(null) converts in the overlay and discards the result, proving that the guest converts.
      - V(libvirt) uploads the disks as volumes into the storage pool O(pool) on O(output_uri) (any pool type
        libvirt supports; block pools get raw volumes) and defines the domain there, optionally starting
        it (O(start)). The domain's serial console is logged to
        C(/var/log/libvirt/qemu/<name>-serial.log) on that host.
      - V(kubevirt) writes disks and a KubeVirt C(VirtualMachine) manifest (C(<name>.yaml), C(kubevirt.io/v1))
        to O(output_dir); the disks become PersistentVolumeClaims (O(kubevirt_volume)). O(name) must be an
        RFC 1123 label. O(networks) maps NICs to V(pod) or to Multus networks (C(namespace/name)); a NIC
        nothing maps goes to the pod network, and only one can. See the collection's C(docs/guides/kubevirt.md).
    type: str
    default: local
    choices: [local, qemu, "null", libvirt, kubevirt]
  output_dir:
    description: Directory for O(output=local), O(output=qemu) and O(output=kubevirt).
    type: path
  name:
    description: Name of the converted guest (default the source's name).
    type: str
  output_format:
    description: Format of the output disks.
    type: str
    default: raw
    choices: [raw, qcow2]
  allocation:
    description: V(sparse) writes only allocated data; V(preallocated) allocates the whole disk.
    type: str
    default: sparse
    choices: [sparse, preallocated]
  networks:
    description:
      - Maps source network names (or NIC MAC addresses) to libvirt network names. A C(*) key is the fallback.
    type: dict
    default: {}
  bridges:
    description:
      - Maps source bridge or network names (or MAC addresses) to host bridges.
    type: dict
    default: {}
  block_driver:
    description: The disk bus of the converted guest.
    type: str
    default: virtio-blk
    choices: [virtio-blk, virtio-scsi]
  parallel:
    description: How many disks are copied at once.
    type: int
    default: 1
  output_uri:
    description:
      - The libvirt connection URI for O(output=libvirt) (local or remote), like virt-v2v's C(-oc).
      - Separate from the source's O(uri), so a domain read from one hypervisor can be defined on another.
    type: str
    default: qemu:///system
  pool:
    description: The storage pool receiving the disks for O(output=libvirt).
    type: str
    default: default
  start:
    description:
      - Start the domain after defining it (O(output=libvirt)).
      - Not part of what is converted - when the output is already up to date, V(true) starts a stopped
        domain without converting again (C(changed=true)), and V(false) leaves the domain as it is.
    type: bool
    default: false
  kubevirt_volume:
    description:
      - How the KubeVirt manifest of O(output=kubevirt) refers to the disks.
      - V(pvc) - one PersistentVolumeClaim per disk, named by O(kubevirt_pvcs); RV(target.upload_commands)
        gives the C(virtctl image-upload) command that fills each one.
      - V(hostdisk) - C(hostDisk) volumes at O(kubevirt_hostdisk_dir) on the node (needs KubeVirt's
        C(HostDisk) feature gate).
    type: str
    default: pvc
    choices: [pvc, hostdisk]
  kubevirt_pvcs:
    description:
      - The claim names for O(kubevirt_volume=pvc), one per disk in the source's order.
      - Default C(<name>-vda), C(<name>-vdb)... (C(sda)... with O(block_driver=virtio-scsi)).
    type: list
    elements: str
  kubevirt_namespace:
    description: The namespace of the VirtualMachine (C(metadata.namespace)) and of the upload commands.
    type: str
  kubevirt_hostdisk_dir:
    description:
      - The directory on the Kubernetes node holding the disks, for O(kubevirt_volume=hostdisk).
      - Default O(output_dir).
    type: path
  force:
    description: Convert again even when the output is already up to date.
    type: bool
    default: false
  guest_agent_packages:
    description:
      - A directory on the conversion host with the C(qemu-guest-agent) package for the guest's release and its
        dependencies (C(.deb) files for Debian/Ubuntu guests, C(.rpm) for RHEL/SUSE-family guests).
      - They are installed offline inside the guest with its own C(dpkg -i) or C(rpm -U).
      - Without it, the agent is installed from the guest's package cache when it is there; otherwise a
        first-boot service installs it once the guest's network is up, and a warning says so.
      - Nothing is installed when the guest already has the agent.
    type: path
  rebuild_initramfs:
    description:
      - Rebuild the initramfs of every kernel that can boot on KVM, as virt-v2v does.
      - By default an initramfs is kept as it is when it already holds the virtio drivers (and the modules
        they depend on) and nothing it is built from or holds a copy of was changed by the conversion, as
        with Debian and Ubuntu's default C(MODULES=most); every other one is rebuilt. The conversion log
        says why each one was rebuilt or kept.
    type: bool
    default: false
  max_concurrent:
    description:
      - At most this many conversions run at once on the conversion host, among the runs that share
        O(slot_dir) (a sliding window - as soon as one ends, the next waiting run starts).
      - A run that has to wait says phase V(queued) in its C(status.json) (rewritten every few seconds) before
        it opens the disks; waiting runs start in the order they started (a run takes its place in the queue
        when it starts, before it reads its source's description, so a source that is slow to read keeps its
        place). The time spent waiting is the phase C(queued) of RV(phases).
      - The slot is freed when the run ends, however it ends (the lock goes with the process, also when it is
        killed). Under C(async), the time spent queued counts towards the job's timeout.
      - In check mode the runs are throttled too (each inspects in an appliance); the lock files are the only
        thing check mode creates.
      - Default (unset) - no limit. Not part of what is converted - changing it does not make an up-to-date
        output out of date, and an up-to-date guest never waits.
    type: int
  slot_dir:
    description:
      - The directory of the lock files for O(max_concurrent). Runs throttle each other when they share it.
      - Default C(kvmigrate-slots) under O(work_dir).
    type: path
requirements:
  - libguestfs with its Python bindings, qemu-img, lxml (see the collection's bindep.txt and requirements.txt)
seealso:
  - module: kvmigrate.v2v.inspect_guest
"""

EXAMPLES = r"""
- name: Convert a VMware OVA to local raw disks and a libvirt XML
  kvmigrate.v2v.convert_guest:
    input: ova
    path: /srv/exports/web01.ova
    output: local
    output_dir: /var/lib/libvirt/images/web01
    networks:
      "VM Network": default

- name: Convert each guest of a list whose items carry their source as one dict
  kvmigrate.v2v.convert_guest:
    source: "{{ item.source }}"
    name: "{{ item.name }}"
    output: libvirt
    pool: default
  loop: "{{ guests }}"
  loop_control:
    label: "{{ item.name }}"
  vars:
    guests:
      - {name: web01, source: {input: ova, path: /srv/exports/web01.ova}}
      - {name: db01, source: {input: vmx, path: /mnt/datastore1/db01/db01.vmx}}

- name: Convert in the background and watch progress
  kvmigrate.v2v.convert_guest:
    input: vmx
    path: /mnt/datastore1/db01/db01.vmx
    output: local
    output_dir: /var/lib/libvirt/images/db01
    output_format: qcow2
  async: 7200
  poll: 0
  register: db01_job

- name: Convert for KubeVirt - disks and a VirtualMachine manifest, disks as PersistentVolumeClaims
  kvmigrate.v2v.convert_guest:
    input: ova
    path: /srv/exports/web01.ova
    output: kubevirt
    output_dir: /srv/kubevirt/web01
    name: web01
    output_format: qcow2
    kubevirt_namespace: migrated
    networks:
      "VM Network": pod
      Backend: tenant-a/backend
  register: web01

- name: Prove a guest converts without writing anything out
  kvmigrate.v2v.convert_guest:
    input: disk
    path: /var/lib/images/old.img
    output: "null"
"""

RETURN = r"""
source:
  description: The source as read (see M(kvmigrate.v2v.inspect_guest)).
  returned: always
  type: dict
guest:
  description: What inspection found in the guest (see M(kvmigrate.v2v.inspect_guest)).
  returned: when the guest was inspected in this run
  type: dict
findings:
  description: Preflight findings; a blocker fails the module before anything is copied.
  returned: when the guest was inspected in this run
  type: list
  elements: dict
plan:
  description: In check mode, what a real run would do.
  returned: check mode
  type: dict
  contains:
    disks: {description: "Target disks with C(path), C(format), C(bus), C(size_bytes).", type: list, elements: dict, returned: always}
    estimated_bytes: {description: "Bytes the copy would write.", type: int, returned: always}
    steps: {description: "The conversion steps planned.", type: list, elements: str, returned: always}
    domain_xml: {description: "The libvirt domain XML that would be written.", type: str, returned: always}
conversion:
  description: What was changed in the guest, one named step each.
  returned: success
  type: list
  elements: str
target:
  description: What was written.
  returned: success
  type: dict
  contains:
    disks:
      description: Output disks with C(path), C(format), C(bus), C(size_bytes) and C(bytes_written).
      type: list
      elements: dict
      returned: always
    domain_xml: {description: "The libvirt domain XML.", type: str, returned: always}
    xml_path: {description: "Where the XML was written.", type: str, returned: "O(output=local) or O(output=qemu)"}
    uri: {description: "The libvirt URI.", type: str, returned: "O(output=libvirt)"}
    pool: {description: "The storage pool.", type: str, returned: "O(output=libvirt)"}
    volumes:
      description: "The volumes written, each with C(pool), C(name), C(path), C(format), C(capacity)."
      type: list
      elements: dict
      returned: "O(output=libvirt)"
    domain: {description: "The defined domain with C(name), C(uuid), C(state), C(autostart).", type: dict, returned: "O(output=libvirt)"}
    qemu_script: {description: "The runnable script.", type: str, returned: "O(output=qemu)"}
    qemu_command: {description: "The qemu command line as a list.", type: list, elements: str, returned: "O(output=qemu)"}
    manifest_path: {description: "Where the VirtualMachine manifest was written.", type: str, returned: "O(output=kubevirt)"}
    manifest: {description: "The VirtualMachine manifest as a dict.", type: dict, returned: "O(output=kubevirt)"}
    upload_commands:
      description: "One C(virtctl image-upload pvc) command per disk that fills its claim."
      type: list
      elements: str
      returned: "O(output=kubevirt) with O(kubevirt_volume=pvc)"
estimate:
  description: Allocated and estimated bytes to copy.
  returned: when the guest was inspected in this run
  type: dict
phases:
  description: Each phase (open, inspect, preflight, convert, trim, copy, output) with its seconds.
  returned: always
  type: list
  elements: dict
network:
  description:
    - What conversion did to keep the guest's network configuration working on the new virtio NIC, one
      entry per interface with C(interface), C(mac), C(method) (V(pinned)) and the C(file) written.
  returned: when an interface name was pinned
  type: list
  elements: dict
log_path:
  description:
    - The conversion log (C(conversion.log) in the guest's work directory) - the phases, each command run
      inside the guest with its output, warnings and the error. It is also returned when the module fails.
  returned: when the guest was converted in this run (not in check mode, which writes nothing)
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.ansible_glue import (
    SOURCE_MUTUALLY_EXCLUSIVE,
    SOURCE_REQUIRED_ONE_OF,
    inspect_options_from_params,
    run_module,
    source_argument_spec,
    source_spec_from_params,
    without_source_params,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.conversion import ConvertOptions, run_convert
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs import OUTPUT_KINDS

ARGUMENT_SPEC = {
    **source_argument_spec(),
    "output": {"type": "str", "default": "local", "choices": list(OUTPUT_KINDS)},
    "output_dir": {"type": "path"},
    "name": {"type": "str"},
    "output_format": {"type": "str", "default": "raw", "choices": ["raw", "qcow2"]},
    "allocation": {"type": "str", "default": "sparse", "choices": ["sparse", "preallocated"]},
    "networks": {"type": "dict", "default": {}},
    "bridges": {"type": "dict", "default": {}},
    "block_driver": {"type": "str", "default": "virtio-blk", "choices": ["virtio-blk", "virtio-scsi"]},
    "parallel": {"type": "int", "default": 1},
    "output_uri": {"type": "str", "default": "qemu:///system"},
    "pool": {"type": "str", "default": "default"},
    "start": {"type": "bool", "default": False},
    "kubevirt_volume": {"type": "str", "default": "pvc", "choices": ["pvc", "hostdisk"]},
    "kubevirt_pvcs": {"type": "list", "elements": "str"},
    "kubevirt_namespace": {"type": "str"},
    "kubevirt_hostdisk_dir": {"type": "path"},
    "force": {"type": "bool", "default": False},
    "guest_agent_packages": {"type": "path"},
    "rebuild_initramfs": {"type": "bool", "default": False},
    "max_concurrent": {"type": "int"},
    "slot_dir": {"type": "path"},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           mutually_exclusive=SOURCE_MUTUALLY_EXCLUSIVE, required_one_of=SOURCE_REQUIRED_ONE_OF,
                           required_if=[("output", kind, ["output_dir"]) for kind in ("local", "qemu", "kubevirt")])
    run_module(module, lambda: run_convert(source_spec_from_params(module.params),
                                           ConvertOptions.from_params(without_source_params(module.params)),
                                           inspect_options=inspect_options_from_params(module.params),
                                           check_mode=module.check_mode))


if __name__ == "__main__":
    main()
