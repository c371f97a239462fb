# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's one libvirt layer, shared by define_domain, ``input: libvirt`` and ``output: libvirt``.

- :mod:`.client`: the guarded import of the libvirt binding, connections
  (read-write or read-only), URIs, libvirt's error text and codes;
- :mod:`.xmlcompare`: domain XML parsed, normalized and compared (only what
  the desired XML says), the diff's "before" side, the identity (UUID, MACs)
  an existing domain keeps;
- :mod:`.volumes`: the disks of a domain as pool volumes, volume lookup,
  deletion and use by other domains, volume creation and the sparse upload
  of a local file into a volume;
- :mod:`.domain`: define_domain's request and result, the plan-then-act run
  (define, start, stop, pause, undefine) and its waits.
"""
