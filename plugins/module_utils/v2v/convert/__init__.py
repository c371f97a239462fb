# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest conversion, dispatched on the inspected operating system.

One package per guest family behind one interface (``base.Converter``), and
one registry: ``CONVERTERS`` maps ``GuestInfo.os_type`` to the converter.
Adding a family is a package ``convert/<family>/`` and one line there (the
imports stay literal so that Ansible's module packager ships the files).
"""

from __future__ import annotations

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.convert.base import (
    ConversionReport,
    Converter,
    GuestConvertOptions,
    fill_missing_macs,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.convert.linux.converter import LinuxConverter
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import NotSupportedError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import GuestInfo

__all__ = ["CONVERTERS", "ConversionReport", "Converter", "GuestConvertOptions", "converter_for",
           "fill_missing_macs"]

# GuestInfo.os_type -> its converter.
CONVERTERS: dict[str, type[Converter]] = {
    "linux": LinuxConverter,
}


def converter_for(guest: GuestInfo) -> Converter:
    """The converter of the guest's operating system; NotSupportedError when there is none."""
    converter = CONVERTERS.get(guest.os_type or "")
    if converter is None:
        what = guest.product_name or guest.distro or guest.os_type or "an unknown operating system"
        raise NotSupportedError(
            f"converting {guest.os_type or 'unknown'} guests is not supported yet (the guest is {what})",
            hint=f"This version of kvmigrate.v2v converts {', '.join(sorted(CONVERTERS))} guests only")
    return converter()
