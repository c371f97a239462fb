#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: define_domain
short_description: Define, update, start, stop or undefine a libvirt domain, idempotently
description:
  - Makes a libvirt domain match a definition and a run state. The definition is domain XML (O(xml)) or
    the result of M(kvmigrate.v2v.convert_guest) (O(converted)).
  - "Comparison is meaningful: libvirt fills in defaults (PCI addresses, controllers, MAC addresses, the
    UUID, the expanded machine type such as C(pc-q35-7.2) for C(q35)), so the desired XML is compared with
    the existing inactive definition only on what the desired XML says, after normalizing both.
    Devices that libvirt never adds by itself (disks, network interfaces, serial ports, channels, graphics
    and similar) are compared as whole lists, so a disk removed from the XML is a change."
  - The existing UUID and MAC addresses are kept when the desired XML leaves them out, so an update never
    changes the identity of the guest or of its network cards.
  - A changed definition of a running domain applies from its next start; the module warns about it.
  - O(state=shutdown) asks the guest to shut down through ACPI and waits until the domain is really off.
  - O(state=absent) destroys a running domain, undefines it with its UEFI NVRAM file, managed save image,
    snapshot and checkpoint metadata, and deletes its storage volumes only with O(remove_storage=true).
version_added: 0.1.0
author:
  - kvmigrate.v2v contributors (@kvmigrate)
attributes:
  check_mode:
    support: full
    description:
      - Nothing changes; RV(actions) lists exactly what a real run would do. The XML is checked against
        libvirt's schema installed on the managed host instead of being defined.
  diff_mode:
    support: full
    description:
      - The normalized definition before (only the parts the desired XML talks about, plus devices that
        would be removed) and after.
options:
  xml:
    description:
      - The desired domain definition, as XML text or as the path of a file on the managed host.
      - Mutually exclusive with O(converted).
    type: str
  converted:
    description:
      - The registered result of M(kvmigrate.v2v.convert_guest); its C(target.domain_xml) is defined.
      - In check mode, the C(plan.domain_xml) of a check-mode conversion is accepted too (its disks are not
        written yet, so they are not checked).
    type: dict
  name:
    description:
      - The domain name. Overrides the C(<name>) of the XML.
      - Without O(xml) or O(converted), the existing domain of that name is managed as it is.
    type: str
  uri:
    description:
      - The libvirt connection URI, local or remote (for example V(qemu+ssh://root@host/system)).
    type: str
    default: qemu:///system
  state:
    description:
      - V(present) defines or updates the domain and leaves it running or not.
      - V(running) also starts it (or resumes it when paused).
      - V(paused) starts it paused, or suspends it when it runs.
      - V(shutdown) asks the guest to shut down (ACPI power button) and waits up to O(wait_timeout) seconds
        until it is off; then fails, or with O(force=true) powers it off.
      - V(absent) destroys and undefines it.
    type: str
    default: present
    choices: [present, running, shutdown, paused, absent]
  autostart:
    description:
      - Start the domain when the libvirt daemon starts. Left as it is when not set.
    type: bool
  wait_timeout:
    description:
      - Seconds to wait for a shutdown to finish, and for O(wait_for).
    type: int
    default: 300
  wait_for:
    description:
      - With O(state=running), wait until the guest is up.
      - V(agent) waits until the QEMU guest agent answers (the domain needs its C(org.qemu.guest_agent.0)
        channel).
      - "A mapping C({console: REGEX}) waits until a line of the serial console matches the regular
        expression. The domain's C(<serial>) must log to a file (C(<log file=...>)), which is read on the
        managed host, so this needs a local O(uri)."
    type: raw
  force:
    description:
      - With O(state=shutdown), power the domain off when it did not shut down within O(wait_timeout),
        and power off a paused domain at once.
    type: bool
    default: false
  remove_storage:
    description:
      - With O(state=absent), also delete the storage volumes of the domain's disks. CD-ROMs and floppies,
        volumes that another domain uses and files that are not in a libvirt storage pool are kept, with a
        warning.
    type: bool
    default: false
requirements:
  - libvirt Python bindings (python3-libvirt) and lxml on the managed host
notes:
  - The domain's disks must exist when it is defined; a missing image or storage volume fails the task
    before anything changes. Local files are checked only for a local O(uri).
  - Deleting a volume of a C(disk) pool whose device name ends in a digit (C(loop0), C(nvme0n1)) fails
    in libvirt itself; on a local O(uri) the module removes the partition with C(parted) instead.
seealso:
  - module: kvmigrate.v2v.convert_guest
"""

EXAMPLES = r"""
- name: Convert a guest, then define it and boot it
  kvmigrate.v2v.convert_guest:
    input: ova
    path: /srv/exports/web01.ova
    output: local
    output_dir: /var/lib/libvirt/images/web01
  register: web01

- name: Define the converted guest and wait for its login prompt
  kvmigrate.v2v.define_domain:
    converted: "{{ web01 }}"
    state: running
    wait_for:
      console: "login:"
    wait_timeout: 600

- name: Define a domain from an XML file, starting with the host
  kvmigrate.v2v.define_domain:
    xml: /etc/kvmigrate/db01.xml
    autostart: true

- name: Shut a guest down cleanly, powering it off after two minutes
  kvmigrate.v2v.define_domain:
    name: web01
    state: shutdown
    wait_timeout: 120
    force: true

- name: Remove a guest and its disks from a remote host
  kvmigrate.v2v.define_domain:
    name: old01
    uri: qemu+ssh://root@kvm2.example.com/system
    state: absent
    remove_storage: true
"""

RETURN = r"""
domain:
  description: The domain after the run (in check mode, as a real run would leave it).
  returned: success
  type: dict
  contains:
    name: {description: "Domain name.", type: str, returned: always}
    uuid: {description: "Domain UUID; null for a domain that check mode would define without a UUID.", type: str, returned: always}
    state: {description: "V(running), V(paused), V(shutdown), V(crashed), V(pmsuspended) or V(absent).", type: str, returned: always}
    autostart: {description: "Whether it starts with the libvirt daemon.", type: bool, returned: always}
    persistent: {description: "Whether it has a persistent definition.", type: bool, returned: always}
actions:
  description:
    - What was done (in check mode, what would be done), in order, for example V(define), V(redefine),
      V(start), V(shutdown), V(undefine) (with what it removes besides), V(delete volume POOL/VOLUME).
  returned: success
  type: list
  elements: str
diff:
  description: The normalized definition before and after, as text.
  returned: in diff mode, when there is a definition to compare
  type: dict
wait:
  description: What O(wait_for) waited for, how long, and for a console the matching line.
  returned: when O(wait_for) is set
  type: dict
  contains:
    for: {description: "V(agent) or V(console).", type: str, returned: always}
    seconds: {description: "Seconds waited.", type: float, returned: always}
    match: {description: "The console line that matched.", type: str, returned: "for a console"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.ansible_glue import run_module
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt.domain import (
    STATES,
    DomainRequest,
    WaitFor,
    converted_is_planned,
    ensure_domain,
    read_xml_argument,
    xml_from_converted,
)

ARGUMENT_SPEC = {
    "xml": {"type": "str"},
    "converted": {"type": "dict"},
    "name": {"type": "str"},
    "uri": {"type": "str", "default": "qemu:///system"},
    "state": {"type": "str", "default": "present", "choices": list(STATES)},
    "autostart": {"type": "bool"},
    "wait_timeout": {"type": "int", "default": 300},
    "wait_for": {"type": "raw"},
    "force": {"type": "bool", "default": False},
    "remove_storage": {"type": "bool", "default": False},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           mutually_exclusive=[("xml", "converted")], required_one_of=[("xml", "converted", "name")])
    p = module.params

    def action() -> object:
        xml = read_xml_argument(p["xml"]) if p["xml"] is not None else None
        if p["converted"] is not None:
            xml = xml_from_converted(p["converted"], check_mode=module.check_mode)
        return ensure_domain(DomainRequest(
            uri=p["uri"], xml=xml, name=p["name"], state=p["state"], autostart=p["autostart"],
            wait_timeout=p["wait_timeout"], wait_for=WaitFor.parse(p["wait_for"]), force=p["force"],
            remove_storage=p["remove_storage"], check_mode=module.check_mode, diff=module._diff,
            check_storage=not (p["converted"] is not None and converted_is_planned(p["converted"]))))

    run_module(module, action)


if __name__ == "__main__":
    main()
