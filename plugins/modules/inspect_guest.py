#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: inspect_guest
short_description: Inspect a guest before converting it to KVM
description:
  - Reads a source (disk images, OVA, VMX, libvirt XML) into one source description, then looks
    inside the guest with libguestfs and reports whether and how it can be converted.
  - Never changes anything. The source is opened through read-only overlays; all disks are added
    to one libguestfs appliance, launched at most once per call.
  - Uses KVM when it really works on the conversion host, otherwise TCG with a warning
    (set E(KVMIGRATE_ACCEL=kvm|tcg) to force it).
version_added: 0.1.0
author:
  - kvmigrate.v2v contributors (@kvmigrate)
extends_documentation_fragment:
  - kvmigrate.v2v.source
attributes:
  check_mode:
    support: full
    description: The module never changes anything; check mode runs the same inspection.
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to compare.
options:
  inspect_os:
    description:
      - Look inside the guest. With V(false) only the source metadata is read (no appliance),
        for a fast listing of a fleet.
    type: bool
    default: true
requirements:
  - libguestfs with its Python bindings, qemu-img (see the collection's bindep.txt)
notes:
  - Free space thresholds are those of virt-v2v, 100 MiB in V(/), 50 MiB in V(/boot), 10 MiB elsewhere,
    and 100 free inodes.
seealso:
  - module: kvmigrate.v2v.convert_guest
"""

EXAMPLES = r"""
- name: Inspect an OVA exported from vSphere
  kvmigrate.v2v.inspect_guest:
    input: ova
    path: /srv/exports/web01.ova
  register: web01

- name: Inspect a VM on an ESXi datastore, its source given as one dict
  kvmigrate.v2v.inspect_guest:
    source:
      input: vmx
      path: ssh://root@esxi1/vmfs/volumes/datastore1/db01/db01.vmx
      known_hosts: /etc/kvmigrate/known_hosts
      password: "{{ esxi_password }}"
  register: db01

- name: Stop when the guest cannot be converted
  ansible.builtin.assert:
    that: web01.findings | selectattr('severity', 'equalto', 'blocker') | list | length == 0
    fail_msg: "{{ web01.findings | map(attribute='message') | join('; ') }}"

- name: List a datastore's VMs quickly, without looking inside them
  kvmigrate.v2v.inspect_guest:
    input: vmx
    path: "{{ item }}"
    inspect_os: false
  loop: "{{ vmx_files }}"

- name: Inspect raw disks of a multi-boot guest, choosing the OS
  kvmigrate.v2v.inspect_guest:
    input: disk
    path:
      - /var/lib/images/old-sda.img
      - /var/lib/images/old-sdb.img
    root: /dev/sda2
"""

RETURN = r"""
source:
  description: The source as its hypervisor described it.
  returned: always
  type: dict
  contains:
    name: {description: "Guest name.", type: str, returned: always}
    hypervisor: {description: "Source hypervisor: vmware, virtualbox, xen, kvm, unknown ...", type: str, returned: always}
    input: {description: "The input kind that read it.", type: str, returned: always}
    memory_mb: {description: "Memory in MiB.", type: int, returned: always}
    vcpus: {description: "Number of virtual CPUs.", type: int, returned: always}
    cpu:
      description: CPU vendor, model and topology (sockets, cores, threads) when the source gives them.
      type: dict
      returned: always
    firmware: {description: "V(bios), V(uefi) or V(unknown).", type: str, returned: always}
    secure_boot: {description: "Whether UEFI secure boot was enabled.", type: bool, returned: always}
    disks:
      description: Disks in order, each with C(path), C(format), C(bus), C(size_bytes), C(controller),
        and C(offset)/C(length) for a disk read in place from inside a tar.
      type: list
      elements: dict
      returned: always
    removables:
      description: CD-ROM and floppy drives, each with C(kind) (cdrom/floppy), C(bus) and C(slot).
      type: list
      elements: dict
      returned: always
    nics:
      description: Network interfaces, each with C(mac), C(model), C(network) or C(bridge).
      type: list
      elements: dict
      returned: always
    display: {description: "Display type when present.", type: str, returned: always}
    sound: {description: "Sound device model when present.", type: str, returned: always}
guest:
  description: What inspection found inside the guest.
  returned: when O(inspect_os=true) and an operating system was found
  type: dict
  contains:
    root: {description: "The root device of the chosen operating system.", type: str, returned: always}
    os_type: {description: "V(linux), V(windows) ...", type: str, returned: always}
    distro: {description: "Distribution, for example V(debian), V(rhel), V(ubuntu), V(sles).", type: str, returned: always}
    version: {description: "Major.minor version.", type: str, returned: always}
    product_name: {description: "The product name the OS gives itself.", type: str, returned: always}
    arch: {description: "Guest architecture.", type: str, returned: always}
    hostname: {description: "The guest's configured hostname.", type: str, returned: always}
    package_format: {description: "V(deb), V(rpm) ...", type: str, returned: always}
    package_manager: {description: "V(apt), V(dnf), V(zypper) ...", type: str, returned: always}
    init_system: {description: "V(systemd), V(sysvinit), V(upstart).", type: str, returned: always}
    bootloader: {description: "V(grub2), V(grub-legacy), V(extlinux), V(systemd-boot).", type: str, returned: always}
    firmware: {description: "Firmware the guest really boots with (an EFI system partition means V(uefi)).", type: str, returned: always}
    kernels:
      description: Installed kernels with C(version), C(path), C(initrd), C(has_virtio_modules),
        C(virtio_in_initramfs) (null when unknown) and C(xen_pv_only).
      type: list
      elements: dict
      returned: always
    filesystems:
      description: Filesystems with C(device), C(type), C(mountpoint), C(size_bytes), C(free_bytes),
        C(free_inodes), C(uuid), C(label).
      type: list
      elements: dict
      returned: always
    mountpoints: {description: "Mount point to device, as the guest's fstab says.", type: dict, returned: always}
    lvm: {description: "Volume groups and their logical volumes.", type: dict, returned: always}
    luks: {description: "LUKS-encrypted devices.", type: list, elements: str, returned: always}
    hypervisor_tools:
      description:
        - Hypervisor tools found, as C(family:package) (for example C(vmware:open-vm-tools)), C(family:file)
          for tools installed without packages (C(vmware:vmware-uninstall-tools.pl), C(virtualbox:uninstall.sh),
          C(parallels:install)), and C(xen:<file>) for modprobe or SUSE initrd files that name Xen PV drivers.
        - Families are C(vmware), C(citrix), C(xen), C(virtualbox), C(hyperv) and C(parallels).
      type: list
      elements: str
      returned: always
    network:
      description: Interface configurations found in the guest, each with C(tool) (ifupdown, netplan,
        networkmanager, ifcfg, networkd), C(interface), C(mac), C(method), C(addresses), C(file).
      type: list
      elements: dict
      returned: always
findings:
  description: Preflight results. A C(blocker) stops a conversion before anything is copied; a C(warning) does not.
  returned: when O(inspect_os=true)
  type: list
  elements: dict
  contains:
    severity: {description: "V(blocker) or V(warning).", type: str, returned: always}
    code: {description: "A stable code, for example V(no-os), V(multiple-os), V(not-enough-space), V(no-virtio-kernel).", type: str, returned: always}
    message: {description: "What was found and what to do.", type: str, returned: always}
    subject: {description: "The device or file concerned, when there is one.", type: str, returned: always}
estimate:
  description: How much data a conversion would copy.
  returned: when O(inspect_os=true)
  type: dict
  contains:
    allocated_bytes: {description: "Bytes allocated in the source images.", type: int, returned: always}
    estimated_bytes: {description: "Bytes a copy will really move once free filesystem space is trimmed.", type: int, returned: always}
phases:
  description: Each phase of the run with its duration in seconds.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.ansible_glue import (
    SOURCE_MUTUALLY_EXCLUSIVE,
    SOURCE_REQUIRED_ONE_OF,
    inspect_options_from_params,
    run_module,
    source_argument_spec,
    source_spec_from_params,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.pipeline import run_inspect

ARGUMENT_SPEC = {
    **source_argument_spec(),
    "inspect_os": {"type": "bool", "default": True},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           mutually_exclusive=SOURCE_MUTUALLY_EXCLUSIVE, required_one_of=SOURCE_REQUIRED_ONE_OF)
    run_module(module, lambda: run_inspect(source_spec_from_params(module.params),
                                           inspect_options_from_params(module.params),
                                           inspect_os=module.params["inspect_os"]))


if __name__ == "__main__":
    main()
