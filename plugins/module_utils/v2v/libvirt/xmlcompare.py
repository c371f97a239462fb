# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Domain XML parsed, normalized and compared: why a second identical define is ``changed: false``.

libvirt fills in defaults when it stores a definition (PCI addresses,
controllers, aliases, a MAC per NIC, the UUID, ``q35`` expanded to
``pc-q35-7.2``...), so raw XML never compares equal. Instead, both the
desired XML and the existing *inactive* definition are normalized (units,
case of MACs and UUIDs, machine aliases from the host's capabilities, number
spellings in addresses, whitespace), and the existing one must *cover* the
desired one: every attribute, text and child element the desired XML gives
is present with the same value. Only what the desired XML says is compared,
with one exception: devices libvirt never adds on its own (disks, NICs,
consoles, channels, graphics, ...) are compared as whole lists, so removing
a disk from the XML is a change. The existing UUID and NIC MAC addresses are
kept when the desired XML leaves them out (:func:`identity_to_keep`).
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import LibvirtError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt.client import Connection
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.xmlsupport import etree

# lxml's element type (its class comes from an optional import).
Element = Any

SCHEMA = "/usr/share/libvirt/schemas/domain.rng"

# Devices libvirt never adds by itself: the desired list of these is the whole list.
OWNED_DEVICES = frozenset({
    "disk", "interface", "filesystem", "hostdev", "graphics", "serial", "parallel", "channel", "rng", "tpm",
    "watchdog", "sound", "redirdev", "smartcard", "shmem", "vsock", "hub", "lease", "memory", "iommu", "crypto",
})
# Devices libvirt adds by default when the XML has none: compared as lists only when the XML has some.
DEFAULTED_DEVICES = frozenset({"video", "memballoon", "console", "audio", "panic"})
# Elements whose number is in KiB when no unit is given.
KIB_ELEMENTS = frozenset({"memory", "currentMemory", "maxMemory", "hard_limit", "soft_limit", "swap_hard_limit",
                          "min_guarantee", "size", "requested"})
_UNITS = {"b": 1, "bytes": 1, "kb": 10**3, "k": 2**10, "kib": 2**10, "mb": 10**6, "m": 2**20, "mib": 2**20,
          "gb": 10**9, "g": 2**30, "gib": 2**30, "tb": 10**12, "t": 2**40, "tib": 2**40,
          "pb": 10**15, "p": 2**50, "pib": 2**50, "eb": 10**18, "e": 2**60, "eib": 2**60}
_INT_RE = re.compile(r"^(0x[0-9a-fA-F]+|\d+)$")
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


# --- reading and normalizing ---------------------------------------------------------------------

def _parser() -> Any:
    return etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)


def parse_xml(text: str, *, what: str = "the domain XML") -> Element:
    """Parse XML (no entities, no network); malformed XML is a :class:`LibvirtError` naming ``what``."""
    try:
        root = etree.fromstring(text.encode("utf-8"), _parser())
    except etree.XMLSyntaxError as exc:
        raise LibvirtError(f"{what} is not well-formed XML: {exc}", hint="Fix the XML, e.g. check it with xmllint") \
            from exc
    return root


def parse_libvirt_xml(text: str) -> Element:
    """XML that libvirt returned (a domain, pool or volume description, the capabilities)."""
    return etree.fromstring(text.encode("utf-8"), _parser())


def desired_root(xml: str, name: str | None) -> Element:
    """Parse the desired definition and apply the ``name`` override."""
    root = parse_xml(xml)
    if root.tag != "domain":
        raise LibvirtError(f"the domain XML has <{root.tag}> at its top, not <domain>",
                           hint="Give a libvirt domain definition")
    name_el = root.find("name")
    if name:
        if name_el is None:
            name_el = etree.Element("name")
            root.insert(0, name_el)
        name_el.text = name
    if name_el is None or not (name_el.text or "").strip():
        raise LibvirtError("the domain XML has no <name>", hint="Add <name> or set the name option")
    name_el.text = name_el.text.strip()
    return root


def domain_name_of(root: Element) -> str:
    return (root.findtext("name") or "").strip()


def _to_bytes(value: str, unit: str | None, default_kib: bool) -> str | None:
    if not _INT_RE.match(value.strip()):
        return None
    factor = _UNITS.get((unit or "").lower()) if unit else (1024 if default_kib else None)
    if factor is None:
        return None
    return str(int(value.strip(), 0) * factor)


def normalize_uuid(text: str) -> str:
    """A UUID in libvirt's spelling: lower case, with dashes."""
    compact = text.strip().replace("-", "").lower()
    if len(compact) != 32:
        return text.strip().lower()
    return f"{compact[:8]}-{compact[8:12]}-{compact[12:16]}-{compact[16:20]}-{compact[20:]}"


def is_uuid(text: str) -> bool:
    """Whether ``text`` is a UUID in one of the spellings libvirt accepts (dashes optional)."""
    return bool(_UUID_RE.match(text.strip()))


def machine_aliases(conn: Connection) -> dict[str, str]:
    """Machine type aliases of the host and what they expand to (``q35`` -> ``pc-q35-7.2``)."""
    try:
        caps = parse_libvirt_xml(conn.getCapabilities())
    except Exception:  # an unknown alias only makes one comparison stricter
        return {}
    aliases = {}
    for machine in caps.iter("machine"):
        canonical = machine.get("canonical")
        if canonical and machine.text:
            aliases[machine.text.strip()] = canonical
    return aliases


def normalize(root: Element, aliases: dict[str, str] | None = None) -> Element:
    """A normalized copy of a ``<domain>``: the same definition always looks the same."""
    out = copy.deepcopy(root)
    for junk in list(out.iter(etree.Comment, etree.ProcessingInstruction)):
        parent = junk.getparent()
        if parent is not None:
            parent.remove(junk)
    for el in out.iter():
        el.tail = None
        if el.text is not None:
            el.text = el.text.strip() or None
        tag = el.tag
        unit = el.get("unit")
        if el.text and (unit or tag in KIB_ELEMENTS):
            converted = _to_bytes(el.text, unit, default_kib=tag in KIB_ELEMENTS)
            if converted is not None:
                el.text = converted
                el.attrib.pop("unit", None)
        elif unit:
            for attr in ("memory", "size"):
                if el.get(attr) is not None:
                    converted = _to_bytes(el.get(attr), unit, default_kib=True)
                    if converted is not None:
                        el.set(attr, converted)
                        el.attrib.pop("unit", None)
        if tag == "mac" and el.get("address"):
            el.set("address", el.get("address").strip().lower().replace("-", ":"))
        elif tag == "uuid" and el.text:
            el.text = normalize_uuid(el.text)
        elif tag == "type" and el.getparent() is not None and el.getparent().tag == "os" and aliases:
            machine = el.get("machine")
            if machine in aliases:
                el.set("machine", aliases[machine])
        elif tag == "address":
            for key, value in el.attrib.items():
                if key != "type" and _INT_RE.match(value):
                    el.set(key, str(int(value, 0)))
    return out


def to_text(root: Element | None) -> str:
    if root is None:
        return ""
    clone = copy.deepcopy(root)
    etree.indent(clone, space="  ")
    return etree.tostring(clone, encoding="unicode", pretty_print=True)


# --- comparing -----------------------------------------------------------------------------------

def _children(el: Element) -> list[Element]:
    return [c for c in el if isinstance(c.tag, str)]


def _score(existing: Element, desired: Element) -> int:
    """How much of ``desired`` ``existing`` has; used to pair elements that differ."""
    if existing.tag != desired.tag:
        return -1
    score = sum(1 for k, v in desired.attrib.items() if existing.get(k) == v)
    if desired.text and existing.text == desired.text:
        score += 1
    for child in _children(desired):
        score += max([_score(c, child) for c in _children(existing) if c.tag == child.tag] + [0])
    return score


def _pair(existing: Element, desired: Element) -> tuple[list[tuple[Element, Element | None, bool]], list[Element]]:
    """Pair each desired child with an existing one: covering ones first, then the most similar.

    Returns ``(desired, existing or None, covers)`` in desired order, and the existing children left over.
    """
    unused = _children(existing)
    paired: dict[int, tuple[Element | None, bool]] = {}
    wanted = _children(desired)
    for index, child in enumerate(wanted):
        match = next((c for c in unused if c.tag == child.tag and covers(c, child)), None)
        if match is not None:
            unused.remove(match)
            paired[index] = (match, True)
    for index, child in enumerate(wanted):
        if index in paired:
            continue
        candidates = [c for c in unused if c.tag == child.tag]
        best = max(candidates, key=lambda c: _score(c, child), default=None)
        if best is not None:
            unused.remove(best)
        paired[index] = (best, False)
    return [(child, *paired[i]) for i, child in enumerate(wanted)], unused


def _extra_devices(desired: Element, unused: list[Element]) -> list[Element]:
    """Existing devices the desired ``<devices>`` does not have and libvirt would not have added."""
    kinds = {c.tag for c in _children(desired)}
    # A console alone makes libvirt add the serial port behind it.
    owned = OWNED_DEVICES - {"serial"} if "console" in kinds and "serial" not in kinds else OWNED_DEVICES
    return [c for c in unused if c.tag in owned or (c.tag in DEFAULTED_DEVICES and c.tag in kinds)]


def covers(existing: Element, desired: Element) -> bool:
    """True if ``existing`` says everything ``desired`` says (both normalized)."""
    if existing.tag != desired.tag:
        return False
    if any(existing.get(k) != v for k, v in desired.attrib.items()):
        return False
    if desired.text is not None and existing.text != desired.text:
        return False
    pairs, unused = _pair(existing, desired)
    if not all(ok for _d, _e, ok in pairs):
        return False
    return not (desired.tag == "devices" and _extra_devices(desired, unused))


def _strip_generated(el: Element) -> Element:
    clone = copy.deepcopy(el)
    for noise in list(clone.iter("address", "alias")):
        noise.getparent().remove(noise)
    return clone


def project(existing: Element, desired: Element) -> Element:
    """``existing`` cut down to the shape of ``desired``: the diff's "before" side.

    Only what the desired XML talks about is shown, plus devices that would
    be removed, so a diff shows the real changes and not libvirt's defaults.
    """
    out = etree.Element(existing.tag, nsmap=existing.nsmap)
    for key in desired.attrib:
        if key in existing.attrib:
            out.set(key, existing.get(key))
    if desired.text is not None:
        out.text = existing.text
    pairs, unused = _pair(existing, desired)
    for child, match, _ok in pairs:
        if match is not None:
            out.append(project(match, child))
    if desired.tag == "devices":
        for extra in _extra_devices(desired, unused):
            out.append(_strip_generated(extra))
    return out


def identity_to_keep(desired: Element, existing: Element) -> tuple[str | None, dict[int, str]]:
    """The existing UUID and NIC MACs that ``desired`` leaves out (both normalized).

    Returns the UUID to add (or None) and, by index among the desired
    ``<interface>`` elements, the MAC address each one keeps.
    """
    uuid = existing.findtext("uuid") if desired.find("uuid") is None else None
    claimed = {m.get("address") for m in desired.findall("devices/interface/mac")}
    candidates = [i for i in existing.findall("devices/interface")
                  if i.find("mac") is not None and i.find("mac").get("address") not in claimed]
    macs: dict[int, str] = {}
    for index, nic in enumerate(desired.findall("devices/interface")):
        if nic.find("mac") is not None or not candidates:
            continue
        match = next((c for c in candidates if covers(c, nic)), None)
        if match is None:
            match = max(candidates, key=lambda c: _score(c, nic))
        candidates.remove(match)
        macs[index] = match.find("mac").get("address")
    return uuid, macs


def apply_identity(root: Element, uuid: str | None, macs: dict[int, str]) -> None:
    """Add a UUID and NIC MACs to a ``<domain>`` (in place)."""
    if uuid and root.find("uuid") is None:
        el = etree.Element("uuid")
        el.text = uuid
        root.find("name").addnext(el)
    nics = root.findall("devices/interface")
    for index, mac in macs.items():
        el = etree.Element("mac", address=mac)
        nics[index].insert(0, el)


_relaxng: Any = None


def schema_errors(root: Element) -> str | None:
    """Errors of ``root`` against libvirt's RelaxNG schema installed here (None: valid or no schema)."""
    global _relaxng  # noqa: PLW0603  # pylint: disable=global-statement
    if not os.path.isfile(SCHEMA):
        return None
    if _relaxng is None:
        try:
            _relaxng = etree.RelaxNG(etree.parse(SCHEMA))
        except (etree.RelaxNGParseError, OSError):
            return None
    if _relaxng.validate(root):
        return None
    return "; ".join(str(e.message) for e in _relaxng.error_log[-3:]) or "invalid"
