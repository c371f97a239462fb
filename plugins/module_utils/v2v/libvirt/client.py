# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt connections, URIs and errors: the one place that imports the libvirt binding.

The binding is optional at import time (a module that never talks to
libvirt still loads); :func:`require_libvirt` says how to install it when it
is needed. Every connection is opened through :func:`connect`, which
silences libvirt's default error printer (errors travel in exceptions here)
and turns a connection failure into a :class:`LibvirtError`.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import LibvirtError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.xmlsupport import require_lxml

try:
    import libvirt
except ImportError:
    libvirt = None
    LIBVIRT_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    LIBVIRT_IMPORT_ERROR = None

try:  # the QEMU-specific part of the binding (guest agent commands); optional
    import libvirt_qemu  # pylint: disable=unused-import  # re-exported for domain.py
except ImportError:
    libvirt_qemu = None

# libvirt's handle types (their classes come from the optional import).
Connection = Any
Domain = Any
Volume = Any
Pool = Any
Stream = Any

DEFAULT_URI = "qemu:///system"


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt prints every error on stderr by default; ours go into exceptions instead."""


def require_libvirt() -> None:
    if libvirt is None:
        raise LibvirtError("the libvirt Python bindings are not installed",
                           hint="Install python3-libvirt (Debian/Ubuntu), python3-libvirt (Fedora/RHEL) "
                                "or libvirt-python from PyPI")
    require_lxml()


def connect(uri: str = DEFAULT_URI, *, read_only: bool = False) -> Connection:
    """Open ``uri`` (read-write, or read-only); raise :class:`LibvirtError` saying why it cannot be reached."""
    require_libvirt()
    libvirt.registerErrorHandler(_quiet, None)
    try:
        return libvirt.openReadOnly(uri) if read_only else libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise LibvirtError(f"cannot connect to libvirt at {uri}: {error_text(exc)}", subject=uri,
                           hint="Check that the libvirt daemon (libvirtd or virtqemud) runs on that host, "
                                "that the URI is right and that this user may use it") from exc


@contextlib.contextmanager
def connection(uri: str, conn: Connection | None = None, *, read_only: bool = False) -> Iterator[Connection]:
    """Use ``conn`` if given, else open ``uri`` (see :func:`connect`) and close it afterwards."""
    if conn is not None:
        yield conn
        return
    opened = connect(uri, read_only=read_only)
    try:
        yield opened
    finally:
        with contextlib.suppress(Exception):
            opened.close()


def error_text(exc: Exception) -> str:
    """libvirt's own message of an error (without the binding's prefix), or the exception's text."""
    getter = getattr(exc, "get_error_message", None)
    text = getter() if callable(getter) else None
    return str(text or exc).strip()


def error_code(exc: Exception) -> int | None:
    """libvirt's ``VIR_ERR_*`` code of an error, or None for other exceptions."""
    getter = getattr(exc, "get_error_code", None)
    return getter() if callable(getter) else None


def unsupported(exc: Exception) -> bool:
    """The driver does not know a flag or an API (e.g. the test driver and UNDEFINE_NVRAM)."""
    return error_code(exc) in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG,
                               libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED)


def is_local_uri(uri: str) -> bool:
    """True when the daemon behind ``uri`` runs on this host (its files are ours to read)."""
    parts = urlsplit(uri)
    return not parts.hostname and "+ssh" not in parts.scheme and "+tcp" not in parts.scheme \
        and "+tls" not in parts.scheme


def is_remote_uri(uri: str) -> bool:
    """Whether ``uri`` names another host (the hypervisor's files are not ours to read)."""
    return bool(urlsplit(uri).hostname)


def is_test_driver(uri: str) -> bool:
    return urlsplit(uri).scheme.split("+")[0] == "test"
