# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""define_domain's engine: define, compare, start, stop and undefine libvirt domains.

Comparison (why a second identical run is ``changed: false``): libvirt fills
in defaults when it stores a definition (PCI addresses, controllers, aliases,
a MAC per NIC, the UUID, ``q35`` expanded to ``pc-q35-7.2``...), so raw XML
never compares equal. Instead, both the desired XML and the existing
*inactive* definition are normalized (units, case of MACs and UUIDs, machine
aliases from the host's capabilities, number spellings in addresses,
whitespace), and the existing one must *cover* the desired one: every
attribute, text and child element the desired XML gives is present with the
same value. Only what the desired XML says is compared, with one exception:
devices libvirt never adds on its own (disks, NICs, consoles, channels,
graphics, ...) are compared as whole lists, so removing a disk from the XML
is a change. The existing UUID and NIC MAC addresses are kept when the
desired XML leaves them out.

Plan first, act second: every run computes the list of ``actions`` before
doing anything, so check mode reports exactly what a real run does.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import subprocess
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.domain_xml import GUEST_AGENT_CHANNEL
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import LibvirtError, V2VError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Serializable
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.xmlsupport import etree, require_lxml

try:
    import libvirt
except ImportError:
    libvirt = None
    LIBVIRT_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    LIBVIRT_IMPORT_ERROR = None

# lxml's element type and libvirt's handle types (their classes come from optional imports).
Element = Any
Connection = Any
Domain = Any
Volume = Any

DEFAULT_URI = "qemu:///system"
STATES = ("present", "running", "shutdown", "paused", "absent")
DEFAULT_WAIT_TIMEOUT = 300
POLL_INTERVAL = 0.5
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

# State names in results, after libvirt's virDomainState (a domain shutting down still runs).
_STATE_NAMES = {0: "running", 1: "running", 2: "running", 3: "paused", 4: "running", 5: "shutdown",
                6: "crashed", 7: "pmsuspended"}


# --- requests and results ------------------------------------------------------------------------

@dataclass
class WaitFor(Serializable):
    """What ``state: running`` waits for after the domain runs: the guest agent or a console line."""

    agent: bool = False
    console: str | None = None

    @classmethod
    def parse(cls, value: Any) -> WaitFor | None:
        """``None``, ``"agent"``, ``{"agent": true}`` or ``{"console": "REGEX"}``."""
        if value in (None, "", {}):
            return None
        if value == "agent":
            return cls(agent=True)
        if isinstance(value, dict) and set(value) <= {"agent", "console"}:
            agent = value.get("agent") in (True, "yes", "true")
            console = value.get("console")
            if agent != (console is not None) and (console is None or isinstance(console, str)):
                wait = cls(agent=agent, console=console)
                wait.validate()
                return wait
        raise LibvirtError(f"wait_for {value!r} is not understood",
                           hint="Use 'agent' or a mapping {console: REGEX}")

    def validate(self) -> None:
        if self.console is not None:
            if not self.console:
                raise LibvirtError("wait_for console is an empty regular expression",
                                   hint="Give the line to wait for, e.g. 'login:'")
            try:
                re.compile(self.console)
            except re.error as exc:
                raise LibvirtError(f"wait_for console {self.console!r} is not a valid regular expression: {exc}",
                                   ) from exc

    def describe(self) -> str:
        return "the guest agent" if self.agent else f"a console line matching {self.console!r}"


@dataclass
class DomainRequest:
    """What define_domain is asked to make true (its options, engine-side).

    ``xml`` is the desired definition as text (``None``: work on the domain
    called ``name`` as it is). ``name`` overrides the XML's ``<name>``.
    ``autostart`` ``None`` leaves it as it is. ``wait_timeout`` bounds the
    shutdown wait and ``wait_for``. ``force`` destroys a domain that did not
    shut down in time. ``remove_storage`` deletes the domain's storage
    volumes with ``state: absent``. ``diff`` asks for a before/after diff.
    ``check_storage`` False skips the check that the disks exist (for the
    planned XML of a check-mode conversion, whose disks are not written).
    """

    uri: str = DEFAULT_URI
    xml: str | None = None
    name: str | None = None
    state: str = "present"
    autostart: bool | None = None
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT
    wait_for: WaitFor | None = None
    force: bool = False
    remove_storage: bool = False
    check_mode: bool = False
    diff: bool = False
    check_storage: bool = True

    def validate(self) -> None:
        if self.state not in STATES:
            raise LibvirtError(f"state {self.state!r} is not supported", hint=f"Use one of: {', '.join(STATES)}")
        if self.wait_timeout < 0:
            raise LibvirtError(f"wait_timeout {self.wait_timeout} is negative", hint="Use 0 or more seconds")
        if self.wait_for is not None:
            if self.state != "running":
                raise LibvirtError(f"wait_for only applies to state: running, not {self.state}",
                                   hint="Drop wait_for, or use state: running")
            self.wait_for.validate()
        if self.xml is None and not self.name:
            raise LibvirtError("neither a domain XML nor a domain name was given",
                               hint="Give xml, converted or name")


@dataclass
class DomainResult(Serializable):
    """define_domain's result: ``domain`` (name, uuid, state, autostart, persistent), ``actions``,
    and ``diff`` / ``wait`` when asked for."""

    changed: bool = False
    domain: dict[str, Any] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    diff: dict[str, str] | None = None
    wait: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().to_dict().items() if v is not None}


# --- connections ---------------------------------------------------------------------------------

def _quiet(_ctx: Any, _err: Any) -> None:
    """libvirt prints every error on stderr by default; ours go into exceptions instead."""


def require_libvirt() -> None:
    if libvirt is None:
        raise LibvirtError("the libvirt Python bindings are not installed",
                           hint="Install python3-libvirt (Debian/Ubuntu), python3-libvirt (Fedora/RHEL) "
                                "or libvirt-python from PyPI")
    require_lxml()


def connect(uri: str = DEFAULT_URI) -> Connection:
    """Open ``uri`` read-write; raise :class:`LibvirtError` saying why it cannot be reached."""
    require_libvirt()
    libvirt.registerErrorHandler(_quiet, None)
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise LibvirtError(f"cannot connect to libvirt at {uri}: {error_text(exc)}", subject=uri,
                           hint="Check that the libvirt daemon (libvirtd or virtqemud) runs on that host, "
                                "that the URI is right and that this user may use it") from exc


@contextlib.contextmanager
def connection(uri: str, conn: Connection | None = None) -> Iterator[Connection]:
    """Use ``conn`` if given, else open ``uri`` and close it afterwards."""
    if conn is not None:
        yield conn
        return
    opened = connect(uri)
    try:
        yield opened
    finally:
        with contextlib.suppress(Exception):
            opened.close()


def error_text(exc: Exception) -> str:
    getter = getattr(exc, "get_error_message", None)
    text = getter() if callable(getter) else None
    return str(text or exc).strip()


def error_code(exc: Exception) -> int | None:
    getter = getattr(exc, "get_error_code", None)
    return getter() if callable(getter) else None


def _unsupported(exc: Exception) -> bool:
    """The driver does not know a flag or an API (e.g. the test driver and UNDEFINE_NVRAM)."""
    return error_code(exc) in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_INVALID_ARG,
                               libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED)


def is_local_uri(uri: str) -> bool:
    """True when the daemon behind ``uri`` runs on this host (its files are ours to read)."""
    parts = urlsplit(uri)
    return not parts.hostname and "+ssh" not in parts.scheme and "+tcp" not in parts.scheme \
        and "+tls" not in parts.scheme


def is_test_driver(uri: str) -> bool:
    return urlsplit(uri).scheme.split("+")[0] == "test"


# --- reading and normalizing XML -----------------------------------------------------------------

def _parser() -> Any:
    return etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)


def parse_xml(text: str, *, what: str = "the domain XML") -> Element:
    try:
        root = etree.fromstring(text.encode("utf-8"), _parser())
    except etree.XMLSyntaxError as exc:
        raise LibvirtError(f"{what} is not well-formed XML: {exc}", hint="Fix the XML, e.g. check it with xmllint") \
            from exc
    return root


def read_xml_argument(value: str) -> str:
    """``xml`` is either the XML text or the path of a file that holds it."""
    if value.lstrip().startswith("<"):
        return value
    path = os.path.expanduser(value.strip())
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise LibvirtError(f"cannot read the domain XML file {path}: {exc.strerror}", subject=path,
                           hint="xml is either XML text (starting with '<') or the path of a file on the "
                                "managed host") from exc


def xml_from_converted(converted: dict[str, Any], *, check_mode: bool = False) -> str:
    """The domain XML of a registered ``convert_guest`` result."""
    if not isinstance(converted, dict):
        raise LibvirtError("converted is not a convert_guest result", hint="Register convert_guest's result "
                           "and pass it as converted")
    if converted.get("failed"):
        raise LibvirtError("the conversion in converted failed, so there is no guest to define",
                           hint=str(converted.get("msg") or "Fix the conversion first"))
    target = converted.get("target") or {}
    xml = target.get("domain_xml") if isinstance(target, dict) else None
    if not xml and check_mode:
        plan = converted.get("plan") or {}
        xml = plan.get("domain_xml") if isinstance(plan, dict) else None
    if not xml:
        if converted.get("plan"):
            raise LibvirtError("converted comes from a check-mode run of convert_guest, which wrote no disks",
                               hint="Run the conversion for real first")
        raise LibvirtError("converted has no target.domain_xml", hint="Pass the registered result of convert_guest")
    return str(xml)


def converted_is_planned(converted: dict[str, Any]) -> bool:
    """Whether ``converted`` only planned its disks (a check-mode conversion)."""
    target = converted.get("target") if isinstance(converted, dict) else None
    return not (isinstance(target, dict) and target.get("domain_xml"))


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


def _normalize_uuid(text: str) -> str:
    compact = text.strip().replace("-", "").lower()
    if len(compact) != 32:
        return text.strip().lower()
    return f"{compact[:8]}-{compact[8:12]}-{compact[12:16]}-{compact[16:20]}-{compact[20:]}"


def machine_aliases(conn: Connection) -> dict[str, str]:
    """Machine type aliases of the host and what they expand to (``q35`` -> ``pc-q35-7.2``)."""
    try:
        caps = etree.fromstring(conn.getCapabilities().encode("utf-8"), _parser())
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
            el.text = _normalize_uuid(el.text)
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


# --- domains -------------------------------------------------------------------------------------

def lookup(conn: Connection, *, name: str | None = None, uuid: str | None = None) -> Domain | None:
    try:
        if name is not None:
            return conn.lookupByName(name)
        if uuid is not None:
            return conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        if error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise LibvirtError(f"cannot look up the domain {name or uuid}: {error_text(exc)}") from exc
    return None


def is_active(dom: Domain) -> bool:
    """Whether the domain runs; a transient domain that went away does not."""
    try:
        return bool(dom.isActive())
    except libvirt.libvirtError as exc:
        if error_code(exc) == libvirt.VIR_ERR_NO_DOMAIN:
            return False
        raise LibvirtError(f"cannot read the state of a domain: {error_text(exc)}") from exc


def state_name(dom: Domain) -> str:
    state, _reason = dom.state()
    return _STATE_NAMES.get(state, "running")


def domain_info(dom: Domain) -> dict[str, Any]:
    persistent = bool(dom.isPersistent())
    return {"name": dom.name(), "uuid": dom.UUIDString(), "state": state_name(dom),
            "autostart": bool(dom.autostart()) if persistent else False, "persistent": persistent}


def inactive_xml(dom: Domain) -> str:
    return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


def live_root(dom: Domain) -> Element:
    return etree.fromstring(dom.XMLDesc(0).encode("utf-8"), _parser())


def define_xml(conn: Connection, xml: str, *, name: str) -> Domain:
    """Define (or redefine) a domain; libvirt validates it against its schema first."""
    try:
        try:
            return conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        except libvirt.libvirtError as exc:
            if not _unsupported(exc) or "validat" in error_text(exc).lower():
                raise
            return conn.defineXML(xml)
    except libvirt.libvirtError as exc:
        raise LibvirtError(f"libvirt refused the definition of {name}: {error_text(exc)}", subject=name,
                           hint="Fix the domain XML") from exc


def _call(what: str, name: str, func: Any, *args: Any) -> Any:
    try:
        return func(*args)
    except libvirt.libvirtError as exc:
        raise LibvirtError(f"cannot {what} the domain {name}: {error_text(exc)}", subject=name) from exc


# --- storage -------------------------------------------------------------------------------------

@dataclass
class DiskSource:
    """Where one disk of a domain lives: a pool volume, a file/block path, or something else."""

    dev: str
    device: str
    kind: str
    path: str | None = None
    pool: str | None = None
    volume: str | None = None


def disk_sources(root: Element) -> list[DiskSource]:
    out = []
    for disk in root.findall("devices/disk"):
        source = disk.find("source")
        target = disk.find("target")
        dev = target.get("dev", "?") if target is not None else "?"
        kind = disk.get("type", "file")
        entry = DiskSource(dev=dev, device=disk.get("device", "disk"), kind=kind)
        if source is not None:
            if kind == "volume":
                entry.pool, entry.volume = source.get("pool"), source.get("volume")
            else:
                entry.path = source.get("file") or source.get("dev") or source.get("dir")
        out.append(entry)
    return out


def lookup_volume(conn: Connection, disk: DiskSource) -> Volume | None:
    """The storage volume behind a disk, or None when no pool manages it."""
    try:
        if disk.kind == "volume" and disk.pool and disk.volume:
            return conn.storagePoolLookupByName(disk.pool).storageVolLookupByName(disk.volume)
        if disk.path:
            return conn.storageVolLookupByPath(disk.path)
    except libvirt.libvirtError:
        return None
    return None


def volume_pool(vol: Volume) -> Any:
    return vol.storagePoolLookupByVolume()


def delete_volume(conn: Connection, vol: Volume, *, uri: str) -> None:
    """Delete a storage volume.

    libvirt (at least up to 10.x) cannot delete a ``disk`` pool volume whose
    device name ends in a digit (``loop0p1``, ``nvme0n1p2``): it runs
    ``parted rm p1``. On a local URI that case falls back to ``parted rm 1``
    and a pool refresh.
    """
    name = vol.name()
    try:
        vol.delete(0)
        return
    except libvirt.libvirtError as exc:
        first = exc
    pool = volume_pool(vol)
    pool_root = etree.fromstring(pool.XMLDesc(0).encode("utf-8"), _parser())
    device = pool_root.find("source/device")
    number = re.search(r"p(\d+)$", name)
    text = error_text(first)
    if not (pool_root.get("type") == "disk" and device is not None and number and is_local_uri(uri)
            and ("rm --script p" in text or "Partition doesn't exist" in text)):
        raise LibvirtError(f"cannot delete the volume {pool.name()}/{name}: {error_text(first)}",
                           subject=name) from first
    proc = subprocess.run(["parted", "--script", device.get("path"), "rm", number.group(1)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LibvirtError(f"cannot delete the volume {pool.name()}/{name}: {error_text(first)}; "
                           f"parted rm {number.group(1)} failed too: {proc.stderr.strip()}", subject=name)
    with contextlib.suppress(libvirt.libvirtError):
        pool.refresh(0)


def volumes_in_use(conn: Connection, *, skip_uuid: str | None = None) -> set[str]:
    """Paths and ``pool/volume`` names that the disks of all domains (but one) use."""
    used: set[str] = set()
    for dom in conn.listAllDomains(0):
        if skip_uuid and dom.UUIDString() == skip_uuid:
            continue
        with contextlib.suppress(libvirt.libvirtError):
            for xml in (dom.XMLDesc(0), dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)):
                for disk in disk_sources(etree.fromstring(xml.encode("utf-8"), _parser())):
                    if disk.path:
                        used.add(disk.path)
                    if disk.pool and disk.volume:
                        used.add(f"{disk.pool}/{disk.volume}")
    return used


def _volume_keys(vol: Volume) -> set[str]:
    keys = {f"{volume_pool(vol).name()}/{vol.name()}"}
    with contextlib.suppress(libvirt.libvirtError):
        keys.add(vol.path())
    return keys


# --- the run -------------------------------------------------------------------------------------

class DomainRun:
    """One define_domain call: plan the actions, then (unless check mode) carry them out."""

    def __init__(self, conn: Connection, request: DomainRequest) -> None:
        self.conn = conn
        self.request = request
        self.result = DomainResult()
        self._aliases: dict[str, str] | None = None

    @property
    def aliases(self) -> dict[str, str]:
        if self._aliases is None:
            self._aliases = machine_aliases(self.conn)
        return self._aliases

    # -- entry ------------------------------------------------------------------------------------
    def run(self) -> DomainResult:
        req = self.request
        desired = desired_root(req.xml, req.name) if req.xml is not None else None
        name = domain_name_of(desired) if desired is not None else str(req.name)
        dom = lookup(self.conn, name=name)
        if desired is not None:
            self._check_identity(desired, dom, name)
        if req.state == "absent":
            self._absent(dom, name)
        else:
            self._ensure(desired, dom, name)
        self.result.changed = bool(self.result.actions)
        return self.result

    def _check_identity(self, desired: Element, dom: Domain | None, name: str) -> None:
        """A name or UUID that belongs to another domain is an error, not a silent rename."""
        uuid_text = desired.findtext("uuid")
        if not uuid_text:
            return
        if not _UUID_RE.match(uuid_text.strip()):
            raise LibvirtError(f"the domain XML's <uuid> {uuid_text!r} is not a UUID", subject=name)
        uuid = _normalize_uuid(uuid_text)
        owner = lookup(self.conn, uuid=uuid)
        if dom is not None and dom.UUIDString().lower() != uuid:
            other = f" (and {uuid} belongs to the domain {owner.name()})" if owner is not None else ""
            raise LibvirtError(f"the name {name} belongs to another domain, with UUID {dom.UUIDString()}, "
                               f"not {uuid}{other}", subject=name,
                               hint="Drop <uuid> from the XML to update that domain, or choose another name")
        if dom is None and owner is not None:
            raise LibvirtError(f"the UUID {uuid} belongs to another domain, {owner.name()}", subject=name,
                               hint="Drop <uuid> from the XML, or undefine or rename that domain first")

    # -- present / running / paused / shutdown ----------------------------------------------------
    def _ensure(self, desired: Element | None, dom: Domain | None, name: str) -> None:
        req = self.request
        if dom is None and desired is None:
            raise LibvirtError(f"the domain {name} is not defined", subject=name,
                               hint="Give xml or converted to define it")
        if req.wait_for is not None:
            self._check_waitable(desired if desired is not None else parse_xml(inactive_xml(dom)), name,
                                 req.wait_for)
        xml_to_define = self._plan_definition(desired, dom, name) if desired is not None else None
        state = state_name(dom) if dom is not None else "shutdown"
        steps = self._plan_state(state)
        autostart = self._plan_autostart(dom)
        self.result.actions += [a for a in [("define" if dom is None else "redefine") if xml_to_define else None,
                                            *steps, autostart] if a]
        if req.check_mode:
            self.result.domain = self._predicted_info(dom, desired, name, steps)
            return
        previous = inactive_xml(dom) if xml_to_define is not None and dom is not None and dom.isPersistent() \
            else None
        defined_here = False
        if xml_to_define is not None:
            dom = define_xml(self.conn, xml_to_define, name=name)
            defined_here = True
        try:
            for step in steps:
                self._do_state_step(dom, name, step)
            if autostart is not None:
                _call("set autostart of", name, dom.setAutostart, 1 if req.autostart else 0)
            if req.wait_for is not None:
                self._wait_for(dom, name, req.wait_for)
        except V2VError as exc:
            if defined_here:
                exc.message += self._roll_back(dom, name, previous)
            raise
        self.result.domain = self._info_after(dom, name)

    def _roll_back(self, dom: Domain, name: str, previous: str | None) -> str:
        """Undo this run's definition after a later step failed; say what became of it."""
        try:
            if previous is not None:
                self.conn.defineXML(previous)
                return "; its previous definition was restored"
            if is_active(dom):
                dom.destroy()
            undefine(dom, name)
        except (libvirt.libvirtError, LibvirtError) as exc:
            return f"; undoing its definition failed too: {error_text(exc)}"
        return "; the domain defined by this task was removed again"

    def _info_after(self, dom: Domain, name: str) -> dict[str, Any]:
        try:
            return domain_info(dom)
        except libvirt.libvirtError as exc:
            if error_code(exc) != libvirt.VIR_ERR_NO_DOMAIN:
                raise LibvirtError(f"cannot read the domain {name}: {error_text(exc)}", subject=name) from exc
            return {"name": name, "uuid": None, "state": "absent", "autostart": False, "persistent": False}

    def _plan_definition(self, desired: Element, dom: Domain | None, name: str) -> str | None:
        """The XML to define, or None when the existing definition already says it all."""
        req = self.request
        after = normalize(desired, self.aliases)
        existing: Element | None = None
        if dom is not None:
            existing = normalize(parse_xml(inactive_xml(dom), what=f"libvirt's definition of {name}"), self.aliases)
            uuid, macs = identity_to_keep(after, existing)
            apply_identity(after, uuid, macs)
            apply_identity(desired, uuid, macs)
        if req.check_storage:
            self._check_storage(after, name)
        if req.diff:
            self.result.diff = {
                "before": to_text(project(existing, after)) if existing is not None else "",
                "after": to_text(after),
                "before_header": f"{name} (libvirt's definition)" if existing is not None else f"{name} (not defined)",
                "after_header": f"{name} (desired)"}
        if existing is not None and dom.isPersistent() and covers(existing, after):
            return None
        if dom is not None and is_active(dom):
            self.result.warnings.append(f"the domain {name} is running: its new definition applies from its "
                                        "next start")
        if req.check_mode:
            errors = schema_errors(desired)
            if errors:
                raise LibvirtError(f"the domain XML of {name} does not match libvirt's schema ({SCHEMA}): "
                                   f"{errors}", subject=name, hint="Fix the domain XML")
        return etree.tostring(desired, encoding="unicode")

    def _check_storage(self, root: Element, name: str) -> None:
        """Missing disk images fail here, with the disk named, not later at the first start."""
        check_files = is_local_uri(self.request.uri) and not is_test_driver(self.request.uri)
        for disk in disk_sources(root):
            if disk.kind == "volume":
                if lookup_volume(self.conn, disk) is None:
                    raise LibvirtError(f"disk {disk.dev}: the storage volume {disk.pool}/{disk.volume} does "
                                       "not exist", subject=name,
                                       hint="Create or upload the volume first, or fix the pool/volume names")
            elif disk.path and disk.kind in ("file", "block") and check_files and not os.path.exists(disk.path):
                raise LibvirtError(f"disk {disk.dev}: {disk.path} does not exist", subject=name,
                                   hint="Copy or convert the disk image there first, or fix the path in the XML")

    def _plan_state(self, state: str) -> list[str]:
        req = self.request
        want = req.state
        if want == "running":
            return {"shutdown": ["start"], "crashed": ["destroy", "start"], "paused": ["resume"],
                    "pmsuspended": ["wake up"]}.get(state, [])
        if want == "paused":
            return {"shutdown": ["start paused"], "crashed": ["destroy", "start paused"], "running": ["suspend"],
                    "pmsuspended": ["wake up", "suspend"]}.get(state, [])
        if want == "shutdown":
            if state == "shutdown":
                return []
            if state == "paused":
                return ["destroy"] if req.force else ["resume", "shutdown"]
            if state == "crashed":
                return ["destroy"]
            return ["shutdown"]
        return []

    def _plan_autostart(self, dom: Domain | None) -> str | None:
        want = self.request.autostart
        if want is None:
            return None
        current = bool(dom.autostart()) if dom is not None and dom.isPersistent() else False
        if current == want:
            return None
        return "enable autostart" if want else "disable autostart"

    def _predicted_info(self, dom: Domain | None, desired: Element | None, name: str,
                        steps: list[str]) -> dict[str, Any]:
        info = domain_info(dom) if dom is not None else {
            "name": name, "uuid": _normalize_uuid(desired.findtext("uuid")) if desired is not None
            and desired.findtext("uuid") else None, "state": "shutdown", "autostart": False, "persistent": True}
        if steps:
            info["state"] = {"running": "running", "paused": "paused", "shutdown": "shutdown"}.get(
                self.request.state, info["state"])
        if self.request.autostart is not None:
            info["autostart"] = self.request.autostart
        info["persistent"] = True if desired is not None else info["persistent"]
        return info

    def _do_state_step(self, dom: Domain, name: str, step: str) -> None:
        if step == "start":
            _call("start", name, dom.create)
        elif step == "start paused":
            _call("start", name, dom.createWithFlags, libvirt.VIR_DOMAIN_START_PAUSED)
        elif step == "resume":
            _call("resume", name, dom.resume)
        elif step == "suspend":
            _call("suspend", name, dom.suspend)
        elif step == "wake up":
            _call("wake up", name, dom.pMWakeup, 0)
        elif step == "destroy":
            _call("destroy", name, dom.destroy)
        elif step == "shutdown":
            self._shutdown(dom, name)

    def _shutdown(self, dom: Domain, name: str) -> None:
        """ACPI power button, then wait until the domain is really off (or destroy it with force)."""
        req = self.request
        try:
            dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
        except libvirt.libvirtError as exc:
            if not _unsupported(exc):
                if not is_active(dom):
                    return
                raise LibvirtError(f"cannot shut down the domain {name}: {error_text(exc)}", subject=name) from exc
            _call("shut down", name, dom.shutdown)
        deadline = time.monotonic() + req.wait_timeout
        while is_active(dom):
            if time.monotonic() >= deadline:
                break
            time.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())) or 0.01)
        if not is_active(dom):
            return
        if req.force:
            _call("destroy", name, dom.destroy)
            self.result.actions.append(f"destroy (still running {req.wait_timeout:g} s after the shutdown request)")
            return
        raise LibvirtError(f"the domain {name} did not shut down within {req.wait_timeout:g} s after an ACPI "
                           "shutdown request; it is still running", subject=name,
                           hint="Its guest may ignore ACPI (no OS, no acpid, or busy): raise wait_timeout, "
                                "or set force: true to power it off")

    # -- waits ------------------------------------------------------------------------------------
    def _wait_for(self, dom: Domain, name: str, wait: WaitFor) -> None:
        start = time.monotonic()
        deadline = start + self.request.wait_timeout
        if wait.agent:
            self._wait_agent(dom, name, deadline)
            self.result.wait = {"for": "agent", "seconds": round(time.monotonic() - start, 1)}
        else:
            line = self._wait_console(dom, name, str(wait.console), deadline)
            self.result.wait = {"for": "console", "seconds": round(time.monotonic() - start, 1), "match": line}

    def _check_waitable(self, root: Element, name: str, wait: WaitFor) -> None:
        """Fail before changing anything when the wait cannot work for this domain."""
        if wait.agent:
            if GUEST_AGENT_CHANNEL not in [t.get("name") for t in root.findall("devices/channel/target")]:
                raise LibvirtError(f"the domain {name} has no guest agent channel ({GUEST_AGENT_CHANNEL})",
                                   subject=name, hint="Add <channel type='unix'><target type='virtio' "
                                   f"name='{GUEST_AGENT_CHANNEL}'/></channel> or wait for a console line")
            return
        if _serial_log(root) is None:
            raise LibvirtError(f"waiting for a console line needs the serial console of {name} logged to a file, "
                               "and its XML has no <serial><log file=...>", subject=name,
                               hint="Add <log file='/var/log/libvirt/qemu/NAME-serial.log' append='off'/> inside "
                                    "<serial>, or wait for the guest agent instead")
        if not is_local_uri(self.request.uri):
            raise LibvirtError(f"the serial log {_serial_log(root)} of {name} is on the libvirt host, "
                               f"not here ({self.request.uri})", subject=name,
                               hint="Run define_domain on the libvirt host with a local URI to wait for a "
                                    "console line, or wait for the guest agent")

    def _wait_agent(self, dom: Domain, name: str, deadline: float) -> None:
        try:
            import libvirt_qemu
        except ImportError:
            libvirt_qemu = None
        while True:
            if not is_active(dom):
                raise LibvirtError(f"the domain {name} stopped while waiting for its guest agent", subject=name)
            if libvirt_qemu is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    libvirt_qemu.qemuAgentCommand(dom, '{"execute": "guest-ping"}', 5, 0)
                    return
            else:
                state = [t.get("state") for t in live_root(dom).findall("devices/channel/target")
                         if t.get("name") == GUEST_AGENT_CHANNEL]
                if "connected" in state:
                    return
            if time.monotonic() >= deadline:
                raise LibvirtError(f"the guest agent of {name} did not answer within "
                                   f"{self.request.wait_timeout:g} s", subject=name,
                                   hint="Is qemu-guest-agent installed and running in the guest? "
                                        "Raise wait_timeout for slow boots")
            time.sleep(POLL_INTERVAL * 2)

    def _wait_console(self, dom: Domain, name: str, pattern: str, deadline: float) -> str:
        root = live_root(dom)
        self._check_waitable(root, name, WaitFor(console=pattern))
        path = str(_serial_log(root))
        regex = re.compile(pattern, re.MULTILINE)
        text = ""
        while True:
            active = is_active(dom)
            with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
            found = regex.search(text)
            if found:
                start = text.rfind("\n", 0, found.start()) + 1
                end = text.find("\n", found.end())
                return text[start:end if end >= 0 else len(text)].strip("\r")
            if not active:
                raise LibvirtError(f"the domain {name} stopped before a console line matched {pattern!r}",
                                   subject=name, hint=f"Last console lines: {_tail(text)}")
            if time.monotonic() >= deadline:
                raise LibvirtError(f"no console line of {name} matched {pattern!r} within "
                                   f"{self.request.wait_timeout:g} s", subject=name,
                                   hint=f"Raise wait_timeout or check the pattern. Last console lines: {_tail(text)}")
            time.sleep(POLL_INTERVAL)

    # -- absent -----------------------------------------------------------------------------------
    def _absent(self, dom: Domain | None, name: str) -> None:
        req = self.request
        if dom is None:
            self.result.domain = {"name": name, "uuid": None, "state": "absent", "autostart": False,
                                  "persistent": False}
            return
        root = parse_xml(inactive_xml(dom) if dom.isPersistent() else dom.XMLDesc(0))
        volumes, kept = self._storage_to_remove(root, dom) if req.remove_storage else ([], [])
        self.result.warnings += kept
        if req.diff:
            self.result.diff = {"before": to_text(normalize(root, self.aliases)), "after": "",
                                "before_header": f"{name} (libvirt's definition)", "after_header": f"{name} (absent)"}
        active = is_active(dom)
        if active:
            self.result.actions.append("destroy")
        if dom.isPersistent():
            self.result.actions.append(self._undefine_action(dom, root))
        self.result.actions += [f"delete volume {volume_pool(v).name()}/{v.name()}" for v in volumes]
        self.result.domain = {"name": name, "uuid": dom.UUIDString(), "state": "absent", "autostart": False,
                              "persistent": False}
        if req.check_mode:
            return
        if active:
            _call("destroy", name, dom.destroy)
        if dom.isPersistent():
            undefine(dom, name)
        for vol in volumes:
            delete_volume(self.conn, vol, uri=req.uri)

    @staticmethod
    def _undefine_action(dom: Domain, root: Element) -> str:
        extras = []
        if root.find("os/nvram") is not None or root.find("os").get("firmware") == "efi" \
                or root.find("os/loader[@type='pflash']") is not None:
            extras.append("UEFI NVRAM")
        with contextlib.suppress(libvirt.libvirtError):
            if dom.hasManagedSaveImage(0):
                extras.append("managed save image")
        with contextlib.suppress(libvirt.libvirtError):
            count = dom.snapshotNum(0)
            if count:
                extras.append(f"metadata of {count} snapshot{'s' if count > 1 else ''}")
        return "undefine" + (f" (with its {', '.join(extras)})" if extras else "")

    def _storage_to_remove(self, root: Element, dom: Domain) -> tuple[list[Volume], list[str]]:
        """The domain's disk volumes, minus removable media and volumes other domains use."""
        volumes, kept = [], []
        used = volumes_in_use(self.conn, skip_uuid=dom.UUIDString())
        refreshed = False
        for disk in disk_sources(root):
            if disk.device in ("cdrom", "floppy") or not (disk.path or disk.volume):
                continue
            vol = lookup_volume(self.conn, disk)
            if vol is None and disk.path and not refreshed:
                refreshed = True
                for pool in self.conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
                    with contextlib.suppress(libvirt.libvirtError):
                        pool.refresh(0)
                vol = lookup_volume(self.conn, disk)
            where = disk.path or f"{disk.pool}/{disk.volume}"
            if vol is None:
                kept.append(f"disk {disk.dev} ({where}) is not a volume of any libvirt storage pool; "
                            "left in place")
            elif _volume_keys(vol) & used:
                kept.append(f"disk {disk.dev} ({where}) is used by another domain too; left in place")
            else:
                volumes.append(vol)
        return volumes, kept


def undefine(dom: Domain, name: str) -> None:
    """Undefine with its NVRAM, managed save image, snapshot and checkpoint metadata."""
    full = (libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
    basic = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    last: Exception | None = None
    for flags in (full, basic):
        try:
            dom.undefineFlags(flags)
            return
        except libvirt.libvirtError as exc:
            last = exc
            if not _unsupported(exc):
                break
    raise LibvirtError(f"cannot undefine the domain {name}: {error_text(last or Exception())}", subject=name)


def _serial_log(root: Element) -> str | None:
    """The file a domain's serial console is logged to, if any."""
    for xpath in ("devices/serial/log", "devices/console/log"):
        log = root.find(xpath)
        if log is not None and log.get("file"):
            return str(log.get("file"))
    return None


def _tail(text: str, lines: int = 5) -> str:
    tail = [line.strip() for line in text.strip().splitlines()[-lines:]]
    return " | ".join(tail) if tail else "(nothing yet)"


def ensure_domain(request: DomainRequest, conn: Connection | None = None) -> DomainResult:
    """define_domain: make the domain match ``request``; see the module's documentation."""
    request.validate()
    with connection(request.uri, conn) as opened:
        return DomainRun(opened, request).run()
