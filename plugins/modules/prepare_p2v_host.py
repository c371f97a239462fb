#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: prepare_p2v_host
short_description: Offer a physical machine's disks to a conversion server over SSH, the way virt-p2v does
description:
  - Runs on the physical machine, booted from a live or rescue system (or, for tests, with O(test_disk) in place
    of its disks).
  - Collects hardware facts (CPU vendor, model and topology, memory, fixed disks with size, model and serial,
    removable drives, NICs with MAC, link and driver, firmware, hardware clock, hostname). The disk the live
    system runs from is never offered.
  - Takes its settings from the options, or from a virt-p2v style kernel command line (O(cmdline), or
    C(/proc/cmdline) with O(use_kernel_cmdline)); options given here override the command line. virt-p2v's key
    names are read (C(p2v.server), C(p2v.port), C(p2v.username), C(p2v.password), C(p2v.identity),
    C(p2v.sudo), C(p2v.name), C(p2v.vcpu), C(p2v.memory), C(p2v.disks), C(p2v.removable),
    C(p2v.interfaces), C(p2v.network), C(p2v.o), C(p2v.oa), C(p2v.oc), C(p2v.of), C(p2v.os), C(p2v.oo),
    C(p2v.pre), C(p2v.post), C(p2v.fail)) with their old aliases and the dotted long forms of virt-p2v 1.42
    (C(p2v.remote.server), C(p2v.auth.username), C(p2v.output.type) ...). An unknown C(p2v.*) key is an error.
  - Exports each selected disk read-only with an NBD server (C(nbdkit -r), or C(qemu-nbd -r) for a test disk that
    is not raw) bound to 127.0.0.1 only.
  - Opens, from the physical machine, an SSH connection to the conversion server. The server's host key must match
    O(host_key_fingerprint) or an entry in O(known_hosts) and is checked before any credential is sent; an unknown
    key is refused with its fingerprint in the message. One reverse port-forward per disk makes the server's
    loopback reach the NBD exports.
  - Creates C(/tmp/virt-p2v-YYYYMMDD-XXXXXXXX) on the server over SFTP and uploads C(physical.xml) (the machine as a
    libvirt-style description whose disks are NBD sources on the forwarded ports), C(name), C(time),
    C(p2v-version), C(hardware.json), C(conversion.json) (the p2v.o* output settings) and the hardware logs
    C(dmesg), C(lscpu), C(lspci), C(lsscsi), C(lsusb) that are available.
  - A detached supervisor process keeps the connection up after the module returns (keepalives that need an
    answer). It watches the C(status) file that M(kvmigrate.v2v.convert_guest) writes into the session directory;
    when the conversion is done it runs O(post), when it failed or the connection was lost it runs O(fail), then it
    closes the tunnels and stops the NBD servers. A lost connection is not re-established; run the module again.
  - O(state=absent) stops the supervisor, the tunnels and the NBD servers and removes the state file.
  - Re-running with the same settings while the session is active returns C(changed=false).
  - Not supported, and failing with a message saying so, are outputs other than local, libvirt, qemu and null
    (C(p2v.o=rhv) ...) and extra output options (C(p2v.oo)). C(p2v.sudo) is recorded in RV(settings) only (the
    conversion runs with Ansible's become on the server).
version_added: 0.1.0
author:
  - kvmigrate.v2v contributors (@kvmigrate)
attributes:
  check_mode:
    support: full
    description: Collects facts and validates the settings; returns RV(actions); starts and connects nothing.
  diff_mode:
    support: none
    description: There is no definition to compare.
options:
  state:
    description: V(present) starts (or keeps) the P2V session; V(absent) stops it.
    type: str
    default: present
    choices: [present, absent]
  server:
    description: The conversion server's host name or address (C(p2v.server)).
    type: str
  port:
    description: The conversion server's SSH port (C(p2v.port)); 22 when not given anywhere.
    type: int
  username:
    description: The SSH user on the conversion server (C(p2v.username)); C(root) when not given anywhere.
    type: str
  password:
    description: The SSH password (C(p2v.password)). Kept in memory only; never written to disk or returned.
    type: str
  private_key:
    description: An SSH private key (OpenSSH or PEM text). Kept in memory only; never written to disk or returned.
    type: str
  private_key_passphrase:
    description: The passphrase of O(private_key).
    type: str
  identity:
    description:
      - Where to read the private key from (C(p2v.identity)), a path, C(file://), C(http://) or C(https://) URL.
        The key is read into memory only. O(private_key) takes precedence.
    type: str
  host_key_fingerprint:
    description:
      - The conversion server's SSH host key fingerprint(s) as C(ssh-keygen -lf) prints them (C(SHA256:...)).
      - Without it (and without O(known_hosts)), C(~/.ssh/known_hosts) is used if it exists. An unknown key is
        always refused.
    type: list
    elements: str
  known_hosts:
    description: A known_hosts file to verify the conversion server's host key against.
    type: path
  cmdline:
    description:
      - A virt-p2v style kernel command line to read settings from (only its C(p2v.*) words are read).
      - May hold C(p2v.password), so it is treated as a secret.
    type: str
  use_kernel_cmdline:
    description: Read the settings from C(/proc/cmdline) (when O(cmdline) is not given).
    type: bool
    default: false
  name:
    description: The name of the converted guest (C(p2v.name)); the short host name by default.
    type: str
  vcpus:
    description: vCPUs of the converted guest (C(p2v.vcpu)); the machine's logical CPUs by default.
    type: int
  memory_mb:
    description: Memory of the converted guest in MiB (C(p2v.memory)); the machine's memory by default.
    type: int
  disks:
    description:
      - The fixed disks to convert, by name (C(sda), C(nvme0n1)) or path (C(p2v.disks)); all fixed disks by default.
    type: list
    elements: str
  removable:
    description: The removable drives (CD-ROM) to describe (C(p2v.removable)); all by default.
    type: list
    elements: str
  interfaces:
    description:
      - The NICs to describe (C(p2v.interfaces)); all NICs with a device behind them by default. Naming a virtual
        interface (a veth, in tests) includes it.
    type: list
    elements: str
  networks:
    description:
      - Maps interface names to target network names (C(p2v.network)); the C(*) key is the network of the others.
        Unmapped interfaces go to C(default).
    type: dict
  output:
    description: The output convert_guest should write on the server (C(p2v.o)); returned in RV(conversion_settings).
    type: str
    choices: [local, libvirt, qemu, "null"]
  output_allocation:
    description: C(p2v.oa), returned in RV(conversion_settings).
    type: str
    choices: [sparse, preallocated]
  output_connection:
    description: C(p2v.oc), the libvirt URI for O(output=libvirt), returned in RV(conversion_settings).
    type: str
  output_format:
    description: C(p2v.of), returned in RV(conversion_settings).
    type: str
    choices: [raw, qcow2]
  output_storage:
    description: C(p2v.os), the output directory or pool, returned in RV(conversion_settings).
    type: str
  sudo:
    description: C(p2v.sudo); recorded only (use C(become) for the conversion task on the server).
    type: bool
  pre:
    description: A shell command run on the physical machine before anything is exported (C(p2v.pre)).
    type: str
  post:
    description:
      - A shell command the supervisor runs on the physical machine after the conversion succeeded (C(p2v.post)),
        for example C(poweroff). Unlike virt-p2v, nothing runs when it is not given.
    type: str
  fail:
    description: A shell command the supervisor runs after the conversion failed or the connection was lost.
    type: str
  test_disk:
    description:
      - A disk image to offer instead of the machine's disks, like virt-p2v's C(--test-disk). Only read.
    type: path
  test_disk_format:
    description: The format of O(test_disk); detected from its header when not given.
    type: str
    choices: [raw, qcow2, vmdk, vhd, vhdx, vdi]
  nbd_server:
    description:
      - The NBD server. V(auto) is C(nbdkit) for raw disks and C(qemu-nbd) for test disks in other formats.
    type: str
    default: auto
    choices: [auto, nbdkit, qemu-nbd]
  nbd_rate:
    description:
      - Limit each disk's read rate (nbdkit rate filter syntax, for example C(50M) bits per second), to spare
        the production network. Needs C(nbdkit).
    type: str
  connect_timeout:
    description: Seconds to wait for the SSH connection.
    type: float
    default: 30
  keepalive_interval:
    description: Seconds between SSH keepalives that need an answer.
    type: float
    default: 30
  keepalive_count_max:
    description: Unanswered keepalives after which the connection counts as lost.
    type: int
    default: 4
  state_dir:
    description: Where the session's state file (the handle, no secrets) and the supervisor's logs are kept.
    type: path
    default: /run/kvmigrate-p2v
requirements:
  - paramiko, nbdkit (or qemu-nbd) on the physical machine's live system
notes:
  - The conversion server needs only its SSH port reachable from the physical machine, and C(AllowTcpForwarding)
    for the user.
seealso:
  - module: kvmigrate.v2v.convert_guest
"""

EXAMPLES = r"""
- name: Offer this machine's disks to the conversion server
  kvmigrate.v2v.prepare_p2v_host:
    server: conv1.example.com
    username: p2v
    private_key: "{{ lookup('ansible.builtin.file', 'p2v_id_ed25519') }}"
    host_key_fingerprint: SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8
    disks: [sda]
    networks:
      em1: prod
  register: p2v

- name: Same, from a virt-p2v kernel command line (PXE-booted live image)
  kvmigrate.v2v.prepare_p2v_host:
    use_kernel_cmdline: true
    known_hosts: /etc/ssh/ssh_known_hosts

- name: Convert on the server
  kvmigrate.v2v.convert_guest:
    input: p2v
    path: "{{ p2v.remote_dir }}"
    output: local
    output_dir: /var/lib/libvirt/images
  delegate_to: conv1.example.com

- name: Stop the tunnels and NBD servers
  kvmigrate.v2v.prepare_p2v_host:
    state: absent
"""

RETURN = r"""
facts:
  description: Hardware facts (C(hostname), C(cpu), C(memory_mb), C(firmware), C(clock), C(disks), C(removables),
    C(nics), C(boot_devices)).
  returned: O(state=present)
  type: dict
settings:
  description: The effective settings (options over the kernel command line); the password shows as C(********).
  returned: O(state=present)
  type: dict
conversion_settings:
  description: Output settings for convert_guest (C(output), C(allocation), C(uri), C(output_format),
    C(output_storage)) from the p2v.o* settings.
  returned: O(state=present)
  type: dict
remote_dir:
  description: The session directory on the conversion server, the O(kvmigrate.v2v.convert_guest#module:path) for
    C(input=p2v).
  returned: success, not in check mode
  type: str
  sample: /tmp/virt-p2v-20261122-k3x9a0qz
ports:
  description: One entry per disk with C(device), C(nbd_server), C(local_port) (NBD on this machine's loopback) and
    C(remote_port) (the forwarded port on the server's loopback).
  returned: success, not in check mode
  type: list
  elements: dict
physical_xml:
  description: The physical.xml that was uploaded.
  returned: success, not in check mode
  type: str
host_key_fingerprint:
  description: The verified host key fingerprint of the conversion server.
  returned: success, not in check mode
  type: str
supervisor_pid:
  description: The process ID of the supervisor that keeps the tunnels up.
  returned: success, not in check mode
  type: int
handle:
  description: The state file of the session.
  returned: always
  type: str
state:
  description: C(active) while the session runs, C(absent) after O(state=absent).
  returned: always
  type: str
actions:
  description: In check mode, what a real run would do.
  returned: check mode
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.ansible_glue import run_module
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.p2v.session import options_from_params, prepare

ARGUMENT_SPEC = {
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
    "server": {"type": "str"},
    "port": {"type": "int"},
    "username": {"type": "str"},
    "password": {"type": "str", "no_log": True},
    "private_key": {"type": "str", "no_log": True},
    "private_key_passphrase": {"type": "str", "no_log": True},
    "identity": {"type": "str"},
    "host_key_fingerprint": {"type": "list", "elements": "str", "no_log": False},
    "known_hosts": {"type": "path"},
    "cmdline": {"type": "str", "no_log": True},
    "use_kernel_cmdline": {"type": "bool", "default": False},
    "name": {"type": "str"},
    "vcpus": {"type": "int"},
    "memory_mb": {"type": "int"},
    "disks": {"type": "list", "elements": "str"},
    "removable": {"type": "list", "elements": "str"},
    "interfaces": {"type": "list", "elements": "str"},
    "networks": {"type": "dict"},
    "output": {"type": "str", "choices": ["local", "libvirt", "qemu", "null"]},
    "output_allocation": {"type": "str", "choices": ["sparse", "preallocated"]},
    "output_connection": {"type": "str"},
    "output_format": {"type": "str", "choices": ["raw", "qcow2"]},
    "output_storage": {"type": "str"},
    "sudo": {"type": "bool"},
    "pre": {"type": "str"},
    "post": {"type": "str"},
    "fail": {"type": "str"},
    "test_disk": {"type": "path"},
    "test_disk_format": {"type": "str", "choices": ["raw", "qcow2", "vmdk", "vhd", "vhdx", "vdi"]},
    "nbd_server": {"type": "str", "default": "auto", "choices": ["auto", "nbdkit", "qemu-nbd"]},
    "nbd_rate": {"type": "str"},
    "connect_timeout": {"type": "float", "default": 30},
    "keepalive_interval": {"type": "float", "default": 30},
    "keepalive_count_max": {"type": "int", "default": 4},
    "state_dir": {"type": "path", "default": "/run/kvmigrate-p2v"},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           mutually_exclusive=[("password", "private_key")])
    run_module(module, lambda: prepare(options_from_params(module.params), check_mode=module.check_mode))


if __name__ == "__main__":
    main()
