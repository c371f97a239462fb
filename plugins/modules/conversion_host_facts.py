#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: conversion_host_facts
short_description: Check a conversion host and decide KVM or TCG
description:
  - Checks everything the conversion modules need on this host and returns it as the fact
    C(kvmigrate_conversion_host). Every requirement is checked, so one run lists all that is missing
    (RV(ansible_facts.kvmigrate_conversion_host.missing)); the module itself fails only on an invalid
    option, so a role can report the whole list in one message.
  - "Checked: the tools C(qemu-img), C(qemu-system-x86_64), C(nbdkit), C(nbdcopy), C(nbdinfo), C(virsh); the
    Python bindings C(guestfs), C(libvirt), C(nbd), C(hivex) and C(lxml) in the interpreter that runs the
    modules; a readable kernel in C(/boot) (libguestfs builds its appliance from it); free space in
    O(work_dir)."
  - Decides KVM or TCG with the engine's own probe (a tiny guest is started under KVM with a short timeout;
    TCG when it does not answer), the same decision M(kvmigrate.v2v.convert_guest) uses. The answer is
    cached per host boot; C(KVMIGRATE_ACCEL=kvm|tcg) in the module's environment forces it.
  - With O(warm_appliance=true), starts the libguestfs appliance once on a scratch disk so its cache is
    built before the first guest needs it.
version_added: 0.1.0
author:
  - kvmigrate.v2v contributors (@kvmigrate)
attributes:
  check_mode:
    support: full
    description: Everything is checked the same way; the appliance is not warmed.
  diff_mode:
    support: none
    description: Nothing is changed.
  facts:
    support: full
    description: Returns C(kvmigrate_conversion_host).
options:
  work_dir:
    description: The work directory conversions will use (the same as their O(kvmigrate.v2v.convert_guest#module:work_dir)).
    type: path
    default: /var/tmp
  min_free_gb:
    description: Free space in GiB that O(work_dir) must have.
    type: float
    default: 10
  warm_appliance:
    description: Start the libguestfs appliance once (takes seconds under KVM, about ten under TCG).
    type: bool
    default: true
  refresh_accelerator:
    description: Probe KVM again instead of using this boot's cached answer.
    type: bool
    default: false
requirements:
  - qemu-system-x86_64 for the KVM probe; libguestfs Python bindings to warm the appliance
notes:
  - "Always C(changed=false): the appliance cache that warming builds is a cache, not managed state."
seealso:
  - module: kvmigrate.v2v.convert_guest
"""

EXAMPLES = r"""
- name: Check the conversion host
  kvmigrate.v2v.conversion_host_facts:
    work_dir: /var/lib/kvmigrate
    min_free_gb: 50

- name: Stop with everything that is missing
  ansible.builtin.assert:
    that: kvmigrate_conversion_host.missing | length == 0
    fail_msg: "{{ kvmigrate_conversion_host.missing | join('; ') }}"

- name: Show the accelerator
  ansible.builtin.debug:
    msg: "{{ kvmigrate_conversion_host.accelerator.accel }}: {{ kvmigrate_conversion_host.accelerator.reason }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts about the conversion host.
  returned: always
  type: dict
  contains:
    kvmigrate_conversion_host:
      description: What the host has and lacks.
      returned: always
      type: dict
      contains:
        accelerator:
          description: C(accel) (V(kvm) or V(tcg)), C(reason), C(probed) (false when cached or forced), C(warning).
          type: dict
          returned: always
        kernels:
          description: Readable kernels in C(/boot).
          type: list
          elements: str
          returned: always
        work_dir:
          description: O(work_dir).
          type: str
          returned: always
        free_bytes:
          description: Free bytes in O(work_dir) (or its nearest existing parent).
          type: int
          returned: always
        appliance:
          description: C(warmed), C(seconds) the launch took, C(detail).
          type: dict
          returned: always
        checks:
          description: Every requirement with C(name), C(ok), C(detail) and, when not met, a C(hint).
          type: list
          elements: dict
          returned: always
        missing:
          description: One line per unmet requirement, saying what to install or change; empty when ready.
          type: list
          elements: str
          returned: always
          sample: ["tool nbdcopy: not found in PATH (install libnbd-bin (Debian/Ubuntu) or libnbd (RHEL family))"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.ansible_glue import run_module
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.conversion_host import GiB, gather_host_facts

ARGUMENT_SPEC = {
    "work_dir": {"type": "path", "default": "/var/tmp"},
    "min_free_gb": {"type": "float", "default": 10},
    "warm_appliance": {"type": "bool", "default": True},
    "refresh_accelerator": {"type": "bool", "default": False},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params

    def action() -> dict[str, object]:
        facts = gather_host_facts(p["work_dir"], min_free_bytes=int(p["min_free_gb"] * GiB),
                                  warm=p["warm_appliance"] and not module.check_mode,
                                  refresh_accelerator=p["refresh_accelerator"])
        return {"changed": False, "ansible_facts": {"kvmigrate_conversion_host": facts.to_dict()},
                "warnings": [facts.accelerator.warning] if facts.accelerator.warning else []}

    run_module(module, action)


if __name__ == "__main__":
    main()
