"""Test guests for kvmigrate.v2v: built with real tools, cached outside the repo.

* Phony guests (:mod:`tests.guests.phony`): OS trees without a kernel, made with
  libguestfs in seconds; enough for inspection and conversion logic.
* A real, bootable Debian 12 guest that looks like it came from VMware
  (:mod:`tests.guests.vmware_debian`), exported as raw, streamOptimized VMDK,
  OVA and an ESXi-style VMX directory.
* A boot checker (:mod:`tests.guests.boot`) that boots images under qemu without
  ever writing them and reports the guest's marker line.

Run ``python -m tests.guests list|build NAME|build-all`` to manage the cache.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _make_collection_importable() -> None:
    """Let ``python -m tests.guests`` import the collection without PYTHONPATH.

    pytest puts ``.collections`` on sys.path itself (pyproject.toml); a plain
    interpreter does not.
    """
    collections = Path(__file__).resolve().parents[2] / ".collections"
    if collections.is_dir() and str(collections) not in sys.path:
        try:
            import ansible_collections.kvmigrate.v2v  # noqa: F401  pylint: disable=import-outside-toplevel
        except ImportError:
            sys.path.insert(0, str(collections))


_make_collection_importable()
