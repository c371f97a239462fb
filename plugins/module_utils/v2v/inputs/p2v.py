# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input ``p2v``: a physical machine prepared by ``prepare_p2v_host``.

``source.path`` is the session directory on the conversion server
(``/tmp/virt-p2v-YYYYMMDD-XXXXXXXX``). Its ``physical.xml`` is read with the
``libvirtxml`` parser; the disks are the NBD ports forwarded from the
physical machine to this host's loopback, and nothing else is accepted.
"""

from __future__ import annotations

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Source
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.p2v.server import load_p2v_source


def load(spec: SourceSpec) -> Source:
    """``load(spec)`` for input ``p2v``: the session directory (or its physical.xml)."""
    return load_p2v_source(spec.single_path())
