# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""define_domain's engine: define, compare, start, stop and undefine libvirt domains, and wait.

Plan first, act second: every run computes the list of ``actions`` before
doing anything, so check mode reports exactly what a real run does. Whether
a definition changes is decided by :mod:`.xmlcompare` (normalized XML, only
what the desired XML says); the domain's storage by :mod:`.volumes`.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import LibvirtError, V2VError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt.client import (
    DEFAULT_URI,
    Connection,
    Domain,
    Volume,
    connection,
    error_code,
    error_text,
    is_local_uri,
    is_test_driver,
    libvirt,
    libvirt_qemu,
    unsupported,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt.volumes import (
    delete_volume,
    disk_sources,
    lookup_volume,
    volume_keys,
    volume_pool,
    volumes_in_use,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt.xmlcompare import (
    SCHEMA,
    Element,
    apply_identity,
    covers,
    desired_root,
    domain_name_of,
    identity_to_keep,
    is_uuid,
    machine_aliases,
    normalize,
    normalize_uuid,
    parse_libvirt_xml,
    parse_xml,
    project,
    schema_errors,
    to_text,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Serializable
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.target import GUEST_AGENT_CHANNEL
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.xmlsupport import etree

STATES = ("present", "running", "shutdown", "paused", "absent")
DEFAULT_WAIT_TIMEOUT = 300
POLL_INTERVAL = 0.5

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


# --- the desired definition --------------------------------------------------------------------

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
    return parse_libvirt_xml(dom.XMLDesc(0))


def define_xml(conn: Connection, xml: str, *, name: str) -> Domain:
    """Define (or redefine) a domain; libvirt validates it against its schema first."""
    try:
        try:
            return conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        except libvirt.libvirtError as exc:
            if not unsupported(exc) or "validat" in error_text(exc).lower():
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
        if not is_uuid(uuid_text):
            raise LibvirtError(f"the domain XML's <uuid> {uuid_text!r} is not a UUID", subject=name)
        uuid = normalize_uuid(uuid_text)
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
        if dom is None:  # it existed, or was just defined: nothing to define means it exists
            raise LibvirtError(f"domain {name} vanished while it was being changed", subject=name)
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
        if existing is not None and dom is not None and dom.isPersistent() and covers(existing, after):
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
            "name": name, "uuid": normalize_uuid(desired.findtext("uuid")) if desired is not None
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
            if not unsupported(exc):
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
            elif volume_keys(vol) & used:
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
            if not unsupported(exc):
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
