# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""virt-p2v style kernel command line: ``p2v.server=conv1 p2v.o=local ...``.

Pure: :func:`parse_kernel_cmdline` takes the text of ``/proc/cmdline`` (or a
PXE entry) and returns :class:`P2VSettings`. Both virt-p2v's short key names
(``p2v.server``, ``p2v.o``, ...) and the dotted long forms of virt-p2v 1.42
(``p2v.remote.server``, ``p2v.output.type``, ...) are read; when a key is
given twice, the last one wins, as on a kernel command line edited at the
boot prompt. Words that do not start with ``p2v.`` belong to the kernel and
are ignored; an unknown ``p2v.*`` key is an error, because a typo there would
otherwise silently convert with the wrong settings.

Quoting follows the kernel: double quotes group words (``p2v.pre="echo hi"``)
and are removed; there are no backslash escapes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import NotSupportedError, V2VError

# Outputs convert_guest can write on the conversion server.
P2V_OUTPUTS = ("local", "libvirt", "qemu", "null")
ALLOCATIONS = ("sparse", "preallocated")
OUTPUT_FORMATS = ("raw", "qcow2")


class CmdlineError(V2VError):
    """The kernel command line has a p2v.* key that is unknown or has a bad value."""


@dataclass
class P2VSettings:
    """Everything a P2V run can be told, by module options or the kernel command line.

    ``None`` means "not given": the module's options and the hardware facts
    fill those in. ``network_map`` maps an interface name to a target network;
    the key ``*`` is the network for interfaces not named.
    """

    server: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity: str | None = None
    sudo: bool | None = None
    name: str | None = None
    vcpus: int | None = None
    vcpu_phys_topo: bool | None = None
    memory_mb: int | None = None
    cpu_vendor: str | None = None
    cpu_model: str | None = None
    cpu_features: dict[str, bool] = field(default_factory=dict)
    rtc_basis: str | None = None
    rtc_offset: int | None = None
    disks: list[str] | None = None
    removable: list[str] | None = None
    interfaces: list[str] | None = None
    network_map: dict[str, str] | None = None
    output: str | None = None
    output_allocation: str | None = None
    output_connection: str | None = None
    output_format: str | None = None
    output_storage: str | None = None
    output_options: list[str] | None = None
    pre: str | None = None
    post: str | None = None
    fail: str | None = None
    skip_test_connection: bool | None = None

    def given(self) -> dict[str, Any]:
        """The settings that were given, without secrets (for results and logs)."""
        data = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value in (None, {}, []):
                continue
            data[item.name] = "********" if item.name == "password" else value
        return data

    def merged_with(self, overrides: P2VSettings) -> P2VSettings:
        """These settings with every value given in ``overrides`` taking precedence."""
        values = {}
        for item in fields(self):
            value = getattr(overrides, item.name)
            values[item.name] = getattr(self, item.name) if value in (None, {}) else value
        return P2VSettings(**values)


def _text(value: str | None, key: str) -> str:
    if value is None or value == "":
        raise CmdlineError(f"{key} needs a value ({key}=...)")
    return value


def _int(value: str | None, key: str) -> int:
    text = _text(value, key)
    if not text.isdigit() or int(text) < 1:
        raise CmdlineError(f"{key}={text} is not a positive whole number")
    return int(text)


def _signed_int(value: str | None, key: str) -> int:
    text = _text(value, key)
    if not re.fullmatch(r"[+-]?\d+", text):
        raise CmdlineError(f"{key}={text} is not a whole number")
    return int(text)


def _bool(value: str | None, key: str) -> bool:
    if value is None or value == "":
        return True  # a bare flag: "p2v.sudo"
    lowered = value.lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off"):
        return False
    raise CmdlineError(f"{key}={value} is not a boolean (use yes/no, true/false, 1/0)")


def _list(value: str | None, key: str) -> list[str]:
    items = [item.strip() for item in _text(value, key).split(",") if item.strip()]
    return [item[len("/dev/"):] if item.startswith("/dev/") else item for item in items]


def parse_memory(value: str | None, key: str = "p2v.memory") -> int:
    """``4096M`` or ``4G`` (virt-p2v's forms; also ``K`` and ``T``) as MiB."""
    text = _text(value, key)
    match = re.fullmatch(r"(\d+)\s*([KMGT])(?:i?B)?", text, re.IGNORECASE)
    if not match:
        raise CmdlineError(f"{key}={text} is not a memory size",
                           hint="Give a number with a unit, for example 4096M or 4G")
    amount, unit = int(match.group(1)), match.group(2).upper()
    mib = {"K": amount / 1024, "M": amount, "G": amount * 1024, "T": amount * 1024 * 1024}[unit]
    if mib < 1:
        raise CmdlineError(f"{key}={text} is less than 1 MiB")
    return int(mib)


def parse_network_map(value: str | None, key: str = "p2v.network") -> dict[str, str]:
    """``em1:ovirtmgmt,em2:storage,default`` → ``{"em1": "ovirtmgmt", "em2": "storage", "*": "default"}``."""
    mapping = {}
    for raw in _text(value, key).split(","):
        item = raw.strip()
        if not item:
            continue
        interface, sep, network = item.partition(":")
        if sep and (not interface or not network):
            raise CmdlineError(f"{key}: {item!r} is not INTERFACE:NETWORK or NETWORK")
        if sep:
            mapping[interface] = network
        else:
            mapping["*"] = interface
    return mapping


def _choice(choices: tuple[str, ...]) -> Callable[[str | None, str], str]:
    def convert(value: str | None, key: str) -> str:
        text = _text(value, key)
        if text not in choices:
            raise CmdlineError(f"{key}={text} is not one of: {', '.join(choices)}")
        return text
    return convert


def _output(value: str | None, key: str) -> str:
    text = _text(value, key)
    if text not in P2V_OUTPUTS:
        raise NotSupportedError(f"{key}={text}: output {text!r} is not supported",
                                hint=f"convert_guest writes these outputs: {', '.join(P2V_OUTPUTS)}")
    return text


def _output_options(value: str | None, key: str) -> list[str]:
    options = [o for o in _text(value, key).split(",") if o]
    if options:
        raise NotSupportedError(f"{key}={value}: extra output options (virt-v2v -oo) are not supported",
                                hint="Remove p2v.oo; the outputs of convert_guest take their settings as options")
    return options


def _rtc_basis(value: str | None, key: str) -> str:
    text = _text(value, key).lower()
    if text in ("utc", "localtime"):
        return text
    if text == "local":
        return "localtime"
    raise CmdlineError(f"{key}={text} is not utc or localtime")


def _feature(name: str) -> Callable[[P2VSettings, str | None, str], None]:
    def store(settings: P2VSettings, value: str | None, key: str) -> None:
        settings.cpu_features[name] = _bool(value, key)
    return store


def _setter(attribute: str,
            convert: Callable[[str | None, str], Any]) -> Callable[[P2VSettings, str | None, str], None]:
    def store(settings: P2VSettings, value: str | None, key: str) -> None:
        setattr(settings, attribute, convert(value, key))
    return store


# key -> how to store it. Short names first, then virt-p2v 1.42's long forms.
_KEYS: dict[str, Callable[[P2VSettings, str | None, str], None]] = {}


def _register(names: tuple[str, ...], store: Callable[[P2VSettings, str | None, str], None]) -> None:
    for name in names:
        _KEYS[name] = store


_register(("p2v.server", "p2v.remote.server"), _setter("server", _text))
_register(("p2v.port", "p2v.remote.port"), _setter("port", _int))
_register(("p2v.username", "p2v.auth.username"), _setter("username", _text))
_register(("p2v.password", "p2v.auth.password"), _setter("password", _text))
_register(("p2v.identity", "p2v.auth.identity", "p2v.auth.identity.url"), _setter("identity", _text))
_register(("p2v.sudo", "p2v.auth.sudo"), _setter("sudo", _bool))
_register(("p2v.name", "p2v.guestname"), _setter("name", _text))
_register(("p2v.vcpu", "p2v.vcpus", "p2v.vcpu.cores"), _setter("vcpus", _int))
_register(("p2v.vcpu.phys_topo",), _setter("vcpu_phys_topo", _bool))
_register(("p2v.memory",), _setter("memory_mb", parse_memory))
_register(("p2v.cpu.vendor",), _setter("cpu_vendor", _text))
_register(("p2v.cpu.model",), _setter("cpu_model", _text))
_register(("p2v.cpu.acpi",), _feature("acpi"))
_register(("p2v.cpu.apic",), _feature("apic"))
_register(("p2v.cpu.pae",), _feature("pae"))
_register(("p2v.rtc.basis",), _setter("rtc_basis", _rtc_basis))
_register(("p2v.rtc.offset",), _setter("rtc_offset", _signed_int))
_register(("p2v.disks",), _setter("disks", _list))
_register(("p2v.removable",), _setter("removable", _list))
_register(("p2v.interfaces",), _setter("interfaces", _list))
_register(("p2v.network", "p2v.network_map"), _setter("network_map", parse_network_map))
_register(("p2v.o", "p2v.output", "p2v.output.type"), _setter("output", _output))
_register(("p2v.oa", "p2v.output.allocation"), _setter("output_allocation", _choice(ALLOCATIONS)))
_register(("p2v.oc", "p2v.output.connection"), _setter("output_connection", _text))
_register(("p2v.of", "p2v.output.format"), _setter("output_format", _choice(OUTPUT_FORMATS)))
_register(("p2v.os", "p2v.output.storage"), _setter("output_storage", _text))
_register(("p2v.oo", "p2v.output.misc"), _setter("output_options", _output_options))
_register(("p2v.pre",), _setter("pre", _text))
_register(("p2v.post",), _setter("post", _text))
_register(("p2v.fail",), _setter("fail", _text))
_register(("p2v.skip_test_connection",), _setter("skip_test_connection", _bool))

KNOWN_KEYS: tuple[str, ...] = tuple(sorted(_KEYS))


def split_cmdline(text: str) -> list[str]:
    """Split a kernel command line into words; double quotes group and are dropped."""
    words: list[str] = []
    current: list[str] = []
    quoted = False
    started = False
    for char in text:
        if char == '"':
            quoted = not quoted
            started = True
        elif char.isspace() and not quoted:
            if started:
                words.append("".join(current))
            current, started = [], False
        else:
            current.append(char)
            started = True
    if quoted:
        raise CmdlineError("the kernel command line has an unbalanced double quote")
    if started:
        words.append("".join(current))
    return words


def parse_kernel_cmdline(text: str) -> P2VSettings:
    """The p2v.* settings of a kernel command line (other words are the kernel's and are ignored)."""
    settings = P2VSettings()
    unknown = []
    for word in split_cmdline(text):
        key, sep, value = word.partition("=")
        if not key.startswith("p2v."):
            continue
        store = _KEYS.get(key)
        if store is None:
            unknown.append(key)
            continue
        store(settings, value if sep else None, key)
    if unknown:
        raise CmdlineError(f"unknown virt-p2v kernel command line key(s): {', '.join(unknown)}",
                           hint="Known keys: " + ", ".join(KNOWN_KEYS))
    return settings


def render_kernel_cmdline(settings: P2VSettings, *, include_password: bool = False) -> str:
    """The p2v.* words for ``settings`` (short key names), e.g. for a PXE entry.

    The password is left out unless asked for: a boot-loader entry is readable
    by anyone on the network that boots it; prefer ``p2v.identity``.
    """
    words = []

    def add(key: str, value: Any) -> None:
        if value is None or value in ([], {}):
            return
        if isinstance(value, bool):
            if key in ("p2v.sudo", "p2v.skip_test_connection"):
                if value:
                    words.append(key)
                return
            value = "yes" if value else "no"
        text = str(value)
        words.append(f'{key}="{text}"' if any(c.isspace() for c in text) else f"{key}={text}")

    add("p2v.server", settings.server)
    add("p2v.port", settings.port)
    add("p2v.username", settings.username)
    if include_password:
        add("p2v.password", settings.password)
    add("p2v.identity", settings.identity)
    add("p2v.sudo", settings.sudo)
    add("p2v.name", settings.name)
    add("p2v.vcpu", settings.vcpus)
    add("p2v.memory", f"{settings.memory_mb}M" if settings.memory_mb else None)
    add("p2v.cpu.vendor", settings.cpu_vendor)
    add("p2v.cpu.model", settings.cpu_model)
    add("p2v.rtc.basis", settings.rtc_basis)
    add("p2v.disks", ",".join(settings.disks or []) or None)
    add("p2v.removable", ",".join(settings.removable or []) or None)
    add("p2v.interfaces", ",".join(settings.interfaces or []) or None)
    if settings.network_map:
        add("p2v.network", ",".join(v if k == "*" else f"{k}:{v}" for k, v in settings.network_map.items()))
    add("p2v.o", settings.output)
    add("p2v.oa", settings.output_allocation)
    add("p2v.oc", settings.output_connection)
    add("p2v.of", settings.output_format)
    add("p2v.os", settings.output_storage)
    add("p2v.pre", settings.pre)
    add("p2v.post", settings.post)
    add("p2v.fail", settings.fail)
    return " ".join(words)
