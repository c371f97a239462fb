# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""P2V: convert a physical machine, the way virt-p2v does.

On the physical machine (``prepare_p2v_host``):

- ``cmdline``: virt-p2v style kernel command line (``p2v.server=...``) into settings;
- ``facts``: hardware facts read from /proc, /sys and /etc;
- ``physical_xml``: the machine as a libvirt-style ``physical.xml`` whose disks are NBD sources;
- ``nbd``: read-only NBD exports of the disks, on loopback only;
- ``tunnel``: over the SSH connection to the conversion server (transport/ssh.py,
  host key verified), one reverse port-forward per disk, and keepalives;
- ``session``: the module's engine (start, re-run, tear down, state file, the
  supervisor that keeps the tunnels up).

On the conversion server, ``convert_guest`` with ``input: p2v`` reads the
session directory and writes ``status`` and the conversion log into it:
that is the input ``inputs/p2v.py``; nothing here is imported by it.
"""

from __future__ import annotations

# What this implementation says it is, in the session directory's p2v-version file.
P2V_VERSION = "kvmigrate.v2v prepare_p2v_host 1"
REMOTE_DIR_PREFIX = "/tmp/virt-p2v-"
