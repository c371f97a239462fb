# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Network configuration found inside a Linux guest.

Pure parsers over file text, one per configuration system. Each returns
``GuestNetConfig`` items: the interface the file configures (by name and/or
MAC), the method (static/dhcp/manual) and the static addresses. Conversion
uses the same parsers to decide how to keep the network working once the NIC
becomes virtio with a new kernel name.
"""

from __future__ import annotations

import configparser
import re

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import GuestNetConfig

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML ships with ansible-core
    HAS_YAML = False

# Where each configuration system keeps its files, as glob patterns.
NET_CONFIG_GLOBS: dict[str, tuple[str, ...]] = {
    "ifupdown": ("/etc/network/interfaces", "/etc/network/interfaces.d/*"),
    "netplan": ("/etc/netplan/*.yaml", "/etc/netplan/*.yml"),
    "networkmanager": ("/etc/NetworkManager/system-connections/*",),
    "ifcfg": ("/etc/sysconfig/network-scripts/ifcfg-*", "/etc/sysconfig/network/ifcfg-*"),
    "networkd": ("/etc/systemd/network/*.network",),
    # Not a configuration but a naming rule: which MAC gets which name (older guests).
    "udev": ("/etc/udev/rules.d/70-persistent-net.rules",),
}


def _prefix_from_netmask(netmask: str) -> int | None:
    try:
        parts = [int(p) for p in netmask.split(".")]
    except ValueError:
        return None
    if len(parts) != 4:
        return None
    return sum(bin(p).count("1") for p in parts)


def _with_prefix(address: str, netmask: str | None) -> str:
    if "/" in address or not netmask:
        return address
    prefix = netmask if netmask.isdigit() else _prefix_from_netmask(netmask)
    return f"{address}/{prefix}" if prefix is not None else address


def parse_ifupdown(text: str, file: str) -> list[GuestNetConfig]:
    """Debian's /etc/network/interfaces."""
    configs: list[GuestNetConfig] = []
    current: GuestNetConfig | None = None
    netmask: str | None = None

    def finish() -> None:
        if current is not None and current.addresses and netmask:
            current.addresses = [_with_prefix(a, netmask) for a in current.addresses]

    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] == "iface" and len(words) >= 4:
            finish()
            netmask = None
            if words[1] == "lo":
                current = None
                continue
            current = GuestNetConfig(tool="ifupdown", interface=words[1], method=words[3], file=file)
            configs.append(current)
        elif words[0] in ("auto", "allow-hotplug", "source", "source-directory", "mapping"):
            continue
        elif current is not None and len(words) >= 2:
            if words[0] == "address":
                current.addresses.append(words[1])
            elif words[0] == "netmask":
                netmask = words[1]
            elif words[0] == "hwaddress":
                current.mac = words[-1].lower()
    finish()
    return configs


def parse_netplan(text: str, file: str) -> list[GuestNetConfig]:
    """Ubuntu's netplan YAML (ethernets, with optional match: macaddress)."""
    if not HAS_YAML:
        return []
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return []
    network = data.get("network") or {}
    configs: list[GuestNetConfig] = []
    for section in ("ethernets", "bonds", "bridges", "vlans"):
        for key, raw_conf in (network.get(section) or {}).items():
            conf = raw_conf or {}
            match = conf.get("match") or {}
            name = conf.get("set-name") or match.get("name") or key
            dhcp = conf.get("dhcp4") in (True, "true", "yes")
            addresses = [str(a) for a in conf.get("addresses") or []]
            method = "dhcp" if dhcp else ("static" if addresses else "manual")
            mac = match.get("macaddress")
            configs.append(GuestNetConfig(tool="netplan", interface=str(name), method=method,
                                          mac=str(mac).lower() if mac else None,
                                          addresses=addresses, file=file))
    return configs


def _ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def parse_nm_keyfile(text: str, file: str) -> list[GuestNetConfig]:
    """A NetworkManager keyfile (.nmconnection)."""
    try:
        ini = _ini(text)
    except configparser.Error:
        return []
    if not ini.has_section("connection"):
        return []
    ctype = ini.get("connection", "type", fallback="")
    if ctype not in ("ethernet", "802-3-ethernet"):
        return []
    iface = ini.get("connection", "interface-name", fallback=None)
    mac = None
    for section in ("ethernet", "802-3-ethernet"):
        if ini.has_section(section):
            mac = ini.get(section, "mac-address", fallback=None) or mac
    method = ini.get("ipv4", "method", fallback=None) if ini.has_section("ipv4") else None
    addresses: list[str] = []
    if ini.has_section("ipv4"):
        for key, value in ini.items("ipv4"):
            if re.fullmatch(r"address\d*|addresses\d*", key):
                addresses.append(value.split(",", 1)[0].strip())
    method = {"manual": "static", "auto": "dhcp"}.get(method or "", method)
    return [GuestNetConfig(tool="networkmanager", interface=iface, method=method,
                           mac=mac.lower() if mac else None, addresses=addresses, file=file)]


def _shell_vars(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip().strip("'\"")
    return values


def parse_ifcfg(text: str, file: str) -> list[GuestNetConfig]:
    """RHEL/SUSE ifcfg-* files."""
    values = _shell_vars(text)
    iface = values.get("DEVICE") or (file.rsplit("ifcfg-", 1)[-1] if "ifcfg-" in file else None)
    if iface == "lo":
        return []
    proto = (values.get("BOOTPROTO") or "").lower()
    addresses = []
    for key, value in sorted(values.items()):
        if re.fullmatch(r"IPADDR\d*", key) and value:
            suffix = key[len("IPADDR"):]
            prefix = values.get(f"PREFIX{suffix}") or values.get(f"NETMASK{suffix}")
            addresses.append(_with_prefix(value, prefix))
    method = {"none": "static", "static": "static", "dhcp": "dhcp"}.get(proto, proto or None)
    if addresses and method is None:
        method = "static"
    mac = values.get("HWADDR") or values.get("MACADDR")
    return [GuestNetConfig(tool="ifcfg", interface=iface, method=method,
                           mac=mac.lower() if mac else None, addresses=addresses, file=file)]


def parse_networkd(text: str, file: str) -> list[GuestNetConfig]:
    """systemd-networkd .network files."""
    name = mac = None
    addresses: list[str] = []
    dhcp = False
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]").lower()
            continue
        if "=" not in line:
            continue
        key, value = (p.strip() for p in line.split("=", 1))
        if section == "match" and key == "Name":
            name = value.split()[0]
        elif section == "match" and key == "MACAddress":
            mac = value.split()[0].lower()
        elif section in ("network", "address") and key == "Address":
            addresses.append(value)
        elif section == "network" and key == "DHCP":
            dhcp = value.lower() in ("yes", "true", "ipv4", "both")
    method = "dhcp" if dhcp else ("static" if addresses else "manual")
    return [GuestNetConfig(tool="networkd", interface=name, method=method, mac=mac,
                           addresses=addresses, file=file)]


_UDEV_ADDRESS = re.compile(r'ATTRS?\{address\}==\s*"([0-9A-Fa-f:]{17})"')
_UDEV_NAME = re.compile(r'\bNAME:?=\s*"([^"]+)"')


def parse_udev_net_rules(text: str, file: str) -> list[GuestNetConfig]:
    """``70-persistent-net.rules``: each rule names the interface with a given MAC."""
    configs = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or 'SUBSYSTEM=="net"' not in line:
            continue
        address, name = _UDEV_ADDRESS.search(line), _UDEV_NAME.search(line)
        if address and name:
            configs.append(GuestNetConfig(tool="udev", interface=name.group(1), mac=address.group(1).lower(),
                                          file=file))
    return configs


PARSERS = {
    "ifupdown": parse_ifupdown,
    "netplan": parse_netplan,
    "networkmanager": parse_nm_keyfile,
    "ifcfg": parse_ifcfg,
    "networkd": parse_networkd,
    "udev": parse_udev_net_rules,
}
