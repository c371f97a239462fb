"""virt-p2v kernel command line: short keys, old aliases, dotted long forms, errors."""

from __future__ import annotations

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import NotSupportedError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.p2v.cmdline import (
    KNOWN_KEYS,
    CmdlineError,
    P2VSettings,
    parse_kernel_cmdline,
    parse_memory,
    render_kernel_cmdline,
    split_cmdline,
)

pytestmark = pytest.mark.unit

FULL = ('BOOT_IMAGE=/vmlinuz root=live:CDLABEL=p2v ro quiet ip=dhcp p2v.server=conv1.example.com p2v.port=2222 '
        'p2v.username=p2v p2v.password=s3cret p2v.identity=file:///root/id p2v.sudo p2v.name=db01 p2v.vcpu=4 '
        'p2v.memory=8G p2v.disks=sda,/dev/sdb p2v.removable=sr0 p2v.interfaces=em1,em2 '
        'p2v.network=em1:prod,em2:storage,default p2v.o=local p2v.oa=preallocated p2v.oc=qemu:///system '
        'p2v.of=qcow2 p2v.os=/var/tmp/out p2v.pre="echo starting" p2v.post=poweroff p2v.fail="logger p2v failed"')


def test_short_keys() -> None:
    s = parse_kernel_cmdline(FULL)
    assert (s.server, s.port, s.username, s.password, s.identity, s.sudo) == (
        "conv1.example.com", 2222, "p2v", "s3cret", "file:///root/id", True)
    assert (s.name, s.vcpus, s.memory_mb) == ("db01", 4, 8192)
    assert s.disks == ["sda", "sdb"] and s.removable == ["sr0"] and s.interfaces == ["em1", "em2"]
    assert s.network_map == {"em1": "prod", "em2": "storage", "*": "default"}
    assert (s.output, s.output_allocation, s.output_connection, s.output_format, s.output_storage) == (
        "local", "preallocated", "qemu:///system", "qcow2", "/var/tmp/out")
    assert (s.pre, s.post, s.fail) == ("echo starting", "poweroff", "logger p2v failed")


def test_dotted_long_forms_and_aliases() -> None:
    s = parse_kernel_cmdline(
        "p2v.remote.server=conv2 p2v.remote.port=22 p2v.auth.username=root p2v.auth.password=pw "
        "p2v.auth.identity.url=https://h/id p2v.auth.sudo=false p2v.guestname=web p2v.vcpu.cores=2 "
        "p2v.vcpu.phys_topo=yes p2v.cpu.vendor=Intel p2v.cpu.model=Skylake-Client p2v.cpu.pae=0 "
        "p2v.rtc.basis=localtime p2v.rtc.offset=-3600 p2v.network_map=eth0:lan p2v.output.type=libvirt "
        "p2v.output.allocation=sparse p2v.output.connection=qemu:///system p2v.output.format=raw "
        "p2v.output.storage=default p2v.skip_test_connection")
    assert (s.server, s.port, s.username, s.password, s.identity, s.sudo) == (
        "conv2", 22, "root", "pw", "https://h/id", False)
    assert (s.name, s.vcpus, s.vcpu_phys_topo, s.cpu_vendor, s.cpu_model) == ("web", 2, True, "Intel", "Skylake-Client")
    assert s.cpu_features == {"pae": False}
    assert (s.rtc_basis, s.rtc_offset, s.network_map) == ("localtime", -3600, {"eth0": "lan"})
    assert (s.output, s.output_storage, s.skip_test_connection) == ("libvirt", "default", True)
    # the old alias p2v.vcpus and p2v.network are read too
    assert parse_kernel_cmdline("p2v.vcpus=3 p2v.network=lan").vcpus == 3


@pytest.mark.parametrize("key", ["p2v.server", "p2v.port", "p2v.username", "p2v.password", "p2v.identity",
                                 "p2v.sudo", "p2v.name", "p2v.vcpu", "p2v.memory", "p2v.disks", "p2v.removable",
                                 "p2v.interfaces", "p2v.network", "p2v.o", "p2v.oa", "p2v.oc", "p2v.of", "p2v.os",
                                 "p2v.oo", "p2v.pre", "p2v.post", "p2v.fail"])
def test_every_key_of_the_issue_is_known(key: str) -> None:
    assert key in KNOWN_KEYS


def test_last_value_wins_and_other_words_ignored() -> None:
    s = parse_kernel_cmdline("console=ttyS0 p2v.server=a p2v.server=b rd.p2v.x=1 p2vserver=z")
    assert s.server == "b"


def test_unknown_key_is_a_clear_error() -> None:
    with pytest.raises(CmdlineError, match=r"unknown virt-p2v kernel command line key\(s\): p2v\.sevrer, p2v\.x"):
        parse_kernel_cmdline("p2v.sevrer=conv1 p2v.x=1")


@pytest.mark.parametrize(("text", "message"), [
    ("p2v.port=ssh", "not a positive whole number"),
    ("p2v.memory=4096", "not a memory size"),
    ("p2v.oa=thin", "not one of: sparse, preallocated"),
    ("p2v.server", "needs a value"),
    ("p2v.sudo=maybe", "not a boolean"),
    ('p2v.pre="echo', "unbalanced double quote"),
    ("p2v.network=:x", "not INTERFACE:NETWORK"),
])
def test_bad_values(text: str, message: str) -> None:
    with pytest.raises(CmdlineError, match=message):
        parse_kernel_cmdline(text)


def test_unsupported_outputs_say_so() -> None:
    with pytest.raises(NotSupportedError, match="output 'rhv' is not supported"):
        parse_kernel_cmdline("p2v.o=rhv")
    with pytest.raises(NotSupportedError, match="extra output options"):
        parse_kernel_cmdline("p2v.oo=foo=bar")


def test_memory_units() -> None:
    assert [parse_memory(v) for v in ("512M", "4G", "1T", "2048MiB", "4gb")] == [512, 4096, 1048576, 2048, 4096]


def test_quotes() -> None:
    assert split_cmdline('a "b c" d="e f"g  ') == ["a", "b c", "d=e fg"]


def test_render_round_trip_without_password() -> None:
    s = parse_kernel_cmdline(FULL)
    text = render_kernel_cmdline(s)
    assert "s3cret" not in text and "p2v.password" not in text
    back = parse_kernel_cmdline(text)
    back.password = s.password
    assert back == s
    assert "p2v.password=s3cret" in render_kernel_cmdline(s, include_password=True)


def test_merge_and_given_hide_the_password() -> None:
    s = parse_kernel_cmdline("p2v.server=a p2v.password=pw p2v.vcpu=2")
    merged = s.merged_with(P2VSettings(server="b", network_map={}))
    assert (merged.server, merged.vcpus, merged.password) == ("b", 2, "pw")
    assert merged.given()["password"] == "********"
    assert "pw" not in repr(merged)
