# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""lxml, imported once for the whole engine, and the one safe way to parse XML with it.

Every XML the engine reads (OVF, libvirt domain XML, what libvirt returns)
goes through :func:`parse_untrusted`'s parser settings: no entity
expansion, no network, comments dropped.
"""

from __future__ import annotations

import traceback
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import V2VError

try:
    from lxml import etree
except ImportError:
    etree = None
    LXML_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    LXML_IMPORT_ERROR = None


def require_lxml() -> None:
    """Raise a clear error when lxml is missing on the host that runs the module."""
    if etree is None:
        raise V2VError("the Python library lxml is not installed",
                       hint="Install python3-lxml (Debian/Ubuntu, Fedora/RHEL) or lxml from PyPI "
                            "on the host that runs the module")


def safe_parser(**options: Any) -> Any:
    """An lxml parser that never expands entities or fetches anything."""
    require_lxml()
    return etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True, **options)
