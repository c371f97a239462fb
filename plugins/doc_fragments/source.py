# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The source options shared by inspect_guest and convert_guest: flat, or nested in O(source)
    # (plugins/module_utils/v2v/ansible_glue.py: SOURCE_ARGUMENT_SPEC, SOURCE_OPTION).
    DOCUMENTATION = r"""
options:
  source:
    description:
      - The source as one dict, with the same keys as the flat source options O(input), O(path), O(uri),
        O(domain), O(format), O(host_key_fingerprint), O(known_hosts), O(password), O(private_key), O(root),
        O(luks_keys) and O(work_dir), which it replaces. A guest list that carries each guest's source as
        a dict (as the C(kvmigrate.v2v.migrate) role's C(migrate_guests) do) passes it on as it is.
      - Give either O(source) or the flat options, not both (the module fails naming both).
      - O(source.password), O(source.private_key) and O(source.luks_keys) are secrets here too
        (C(no_log)).
    type: dict
    suboptions:
      input:
        description: As O(input).
        type: str
        required: true
        choices: [disk, ova, vmx, libvirtxml, libvirt, p2v]
      path:
        description: As O(path).
        type: list
        elements: str
      uri:
        description: As O(uri).
        type: str
      domain:
        description: As O(domain).
        type: str
      format:
        description: As O(format).
        type: str
        choices: [raw, qcow2, vmdk, vhd, vhdx, vdi]
      host_key_fingerprint:
        description: As O(host_key_fingerprint).
        type: list
        elements: str
        aliases: [ssh_host_key]
      known_hosts:
        description: As O(known_hosts).
        type: path
      password:
        description: As O(password).
        type: str
      private_key:
        description: As O(private_key).
        type: str
      root:
        description: As O(root).
        type: str
        default: single
      luks_keys:
        description: As O(luks_keys).
        type: list
        elements: str
      work_dir:
        description: As O(work_dir).
        type: path
        default: /var/tmp
  input:
    description:
      - What kind of source O(path) (or O(uri) and O(domain)) points at.
      - Required unless the source is given as O(source).
      - V(disk) is one or more disk images (raw, qcow2, vmdk, vhd, vhdx, vdi).
      - V(ova) is an C(.ova) file (plain, gzip or xz compressed) or a directory with an extracted OVF.
      - V(vmx) is a VMware C(.vmx) file on a local or NFS path, or in an ESXi datastore read over SSH
        (O(path) V(ssh://root@esxi[:port]/vmfs/volumes/datastore/vm/vm.vmx)). Over SSH the host key must be
        pinned with O(host_key_fingerprint) or known in O(known_hosts), and only flat disks are read (no sparse or
        seSparse disks, no snapshots).
      - V(libvirtxml) is a libvirt domain XML file.
      - V(libvirt) is a domain by name (O(domain)) on a libvirt URI (O(uri)), read through a read-only
        connection. A running or paused domain is refused (shut it down first). Disks of domains on remote
        C(+ssh) URIs are read over SSH when O(password) or O(private_key) is set (host key checked as for
        O(input=vmx) over SSH); disks on other remote URIs cannot be read yet, only their metadata
        (M(kvmigrate.v2v.inspect_guest) with C(inspect_os=false)).
      - V(p2v) is a P2V session directory (C(/tmp/virt-p2v-YYYYMMDD-XXXXXXXX)) that
        M(kvmigrate.v2v.prepare_p2v_host) created on this conversion server; the disks are read through the
        forwarded NBD ports on loopback, and C(status) and C(virt-v2v-conversion-log.txt) are written into it.
    type: str
    choices: [disk, ova, vmx, libvirtxml, libvirt, p2v]
  path:
    description:
      - The source file or directory. For O(input=disk), a list of disk images (the guest's disks in order).
    type: list
    elements: str
  uri:
    description:
      - The libvirt connection URI of the source hypervisor, for O(input=libvirt).
    type: str
  domain:
    description:
      - The domain name on O(uri), for O(input=libvirt).
    type: str
  format:
    description:
      - The disk format, when it must not be detected (O(input=disk)).
      - Detection never lets qemu guess; the detected or given format is always passed on explicitly.
    type: str
    choices: [raw, qcow2, vmdk, vhd, vhdx, vdi]
  host_key_fingerprint:
    description:
      - The SSH host key fingerprint(s) of the SSH server of a remote source, as C(ssh-keygen -lf) prints them
        (C(SHA256:...)).
      - The server's key is checked before any credential is sent. It is accepted when it matches one of these
        or the server's entry in O(known_hosts); an unknown key is always refused, with its fingerprint in the
        message.
      - M(kvmigrate.v2v.prepare_p2v_host) names the same thing
        O(kvmigrate.v2v.prepare_p2v_host#module:host_key_fingerprint). The alias C(ssh_host_key) is its earlier name.
    type: list
    elements: str
    aliases: [ssh_host_key]
  known_hosts:
    description:
      - A known_hosts file to verify the SSH server of a remote source against (only read, never written).
        Unknown keys are refused.
    type: path
  password:
    description:
      - Password for a remote source. Never written to disk; nbdkit gets it through an inherited pipe.
    type: str
  private_key:
    description:
      - SSH private key for a remote source, unencrypted, either as its text or as the path of a key file on
        the conversion host.
      - Key text is never written to disk; nbdkit reads it from a private C(ssh-agent) that lives for the run.
    type: str
  root:
    description:
      - Which operating system to use when the disks hold several.
      - V(single) fails when there is more than one, V(first) takes the first one found,
        or give the root device (for example V(/dev/sda2)).
    type: str
    default: single
  luks_keys:
    description:
      - Passphrases tried on LUKS-encrypted volumes in the guest.
    type: list
    elements: str
  work_dir:
    description:
      - A directory for temporary files. Overlays are removed when the module ends.
      - The extraction of a compressed (gzip/xz/bzip2) OVA, and gzip-compressed disks of an OVF, are kept in a
        private C(ova-<key>) directory under it, so that a later inspect or convert of the same unchanged file
        does not unpack it again; delete such directories when the migration is done.
    type: path
    default: /var/tmp
"""
