"""The guest network configuration parsers, on text."""

from __future__ import annotations

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v import guestnet

pytestmark = pytest.mark.unit


def test_ifupdown_static_with_netmask() -> None:
    text = """
auto lo
iface lo inet loopback

# the VMware NIC
allow-hotplug ens192
iface ens192 inet static
    address 192.168.122.50
    netmask 255.255.255.0
    gateway 192.168.122.1
    hwaddress ether 00:0C:29:AA:BB:CC

iface ens224 inet dhcp
"""
    configs = guestnet.parse_ifupdown(text, "/etc/network/interfaces")
    assert [c.to_dict() for c in configs] == [
        {"tool": "ifupdown", "interface": "ens192", "mac": "00:0c:29:aa:bb:cc", "method": "static",
         "addresses": ["192.168.122.50/24"], "file": "/etc/network/interfaces"},
        {"tool": "ifupdown", "interface": "ens224", "mac": None, "method": "dhcp",
         "addresses": [], "file": "/etc/network/interfaces"},
    ]


def test_ifupdown_cidr_address_kept() -> None:
    configs = guestnet.parse_ifupdown("iface eth0 inet static\n address 10.0.0.5/16\n", "f")
    assert configs[0].addresses == ["10.0.0.5/16"]


def test_netplan_match_and_set_name() -> None:
    text = """
network:
  version: 2
  ethernets:
    uplink:
      match:
        macaddress: "00:50:56:AA:BB:CC"
      set-name: ens160
      addresses: [10.1.2.3/24]
      routes:
        - to: default
          via: 10.1.2.1
    ens192:
      dhcp4: true
"""
    configs = guestnet.parse_netplan(text, "/etc/netplan/50.yaml")
    assert [(c.interface, c.mac, c.method, c.addresses) for c in configs] == [
        ("ens160", "00:50:56:aa:bb:cc", "static", ["10.1.2.3/24"]),
        ("ens192", None, "dhcp", []),
    ]


def test_netplan_garbage_is_ignored() -> None:
    assert guestnet.parse_netplan("network: [unclosed", "f") == []


def test_networkmanager_keyfile() -> None:
    text = """
[connection]
id=Wired
type=ethernet
interface-name=ens192

[ethernet]
mac-address=00:50:56:01:02:03

[ipv4]
method=manual
address1=192.168.1.10/24,192.168.1.1
"""
    (config,) = guestnet.parse_nm_keyfile(text, "/etc/NetworkManager/system-connections/w.nmconnection")
    assert (config.interface, config.mac, config.method, config.addresses) == (
        "ens192", "00:50:56:01:02:03", "static", ["192.168.1.10/24"])


def test_networkmanager_keyfile_of_a_wifi_is_not_an_ethernet_config() -> None:
    assert guestnet.parse_nm_keyfile("[connection]\ntype=wifi\n", "f") == []


def test_ifcfg_rhel_static() -> None:
    text = 'DEVICE=ens192\nBOOTPROTO=none\nIPADDR=10.0.0.9\nPREFIX=24\nHWADDR="00:50:56:0A:0B:0C"\nONBOOT=yes\n'
    (config,) = guestnet.parse_ifcfg(text, "/etc/sysconfig/network-scripts/ifcfg-ens192")
    assert (config.interface, config.mac, config.method, config.addresses) == (
        "ens192", "00:50:56:0a:0b:0c", "static", ["10.0.0.9/24"])


def test_ifcfg_suse_name_from_file_and_netmask() -> None:
    text = "BOOTPROTO='static'\nIPADDR='172.16.0.4'\nNETMASK='255.255.0.0'\nSTARTMODE='auto'\n"
    (config,) = guestnet.parse_ifcfg(text, "/etc/sysconfig/network/ifcfg-eth0")
    assert (config.interface, config.method, config.addresses) == ("eth0", "static", ["172.16.0.4/16"])
    assert guestnet.parse_ifcfg("DEVICE=lo\n", "/etc/sysconfig/network-scripts/ifcfg-lo") == []


def test_networkd() -> None:
    text = "[Match]\nName=ens192\n\n[Network]\nAddress=192.168.5.5/24\nGateway=192.168.5.1\n"
    (config,) = guestnet.parse_networkd(text, "/etc/systemd/network/10-ens192.network")
    assert (config.interface, config.method, config.addresses) == ("ens192", "static", ["192.168.5.5/24"])
    (dhcp,) = guestnet.parse_networkd("[Match]\nMACAddress=00:11:22:33:44:55\n[Network]\nDHCP=yes\n", "f")
    assert (dhcp.interface, dhcp.mac, dhcp.method) == (None, "00:11:22:33:44:55", "dhcp")
