"""define_domain against a real libvirtd of the test session (tests/libvirtd.py).

Domains here have a blank qcow2 disk: under TCG they start and sit in the
BIOS, which is all the state tests need (such a guest ignores ACPI, which is
how the shutdown timeout and ``force`` are tested). The console wait boots
the host's kernel directly, which prints its banner within seconds.
"""

from __future__ import annotations

import glob
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import LibvirtError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt import domain as ld
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt import xmlcompare as xc
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt.client import connect
from tests.libvirtd import PrivateLibvirtd
from tests.playbook import run_tasks

pytestmark = pytest.mark.integration

MODULE = "kvmigrate.v2v.define_domain"


def blank_disk(path: Path, size: str = "64M") -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path


def domain_xml(name: str, disk: Path | str | None, *, memory_mib: int = 128, mac: str | None = None,
               uuid: str | None = None, serial_log: Path | None = None, kernel: str | None = None,
               nic: bool = True, uefi: bool = False, disk_xml: str | None = None) -> str:
    parts = [f"<domain type='qemu'><name>{name}</name>"]
    if uuid:
        parts.append(f"<uuid>{uuid}</uuid>")
    parts.append(f"<memory unit='MiB'>{memory_mib}</memory><vcpu>1</vcpu>")
    parts.append("<os firmware='efi'>" if uefi else "<os>")
    parts.append("<type arch='x86_64' machine='q35'>hvm</type>")
    if kernel:
        parts.append(f"<kernel>{kernel}</kernel><cmdline>console=ttyS0 panic=-1</cmdline>")
    parts.append("</os><features><acpi/><apic/></features><on_reboot>destroy</on_reboot><devices>")
    if disk_xml:
        parts.append(disk_xml)
    elif disk is not None:
        parts.append(f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>"
                     "<target dev='vda' bus='virtio'/></disk>")
    if nic:
        parts.append("<interface type='user'>" + (f"<mac address='{mac}'/>" if mac else "")
                     + "<model type='virtio'/></interface>")
    log = f"<log file='{serial_log}' append='off'/>" if serial_log else ""
    parts.append(f"<serial type='pty'>{log}<target port='0'/></serial>"
                 "<console type='pty'><target type='serial' port='0'/></console>"
                 "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
                 "<memballoon model='virtio'/></devices></domain>")
    return "".join(parts)


def protocol(tag: str, args: dict[str, Any], verify: list[str]) -> list[dict[str, Any]]:
    """check → real → verify with virsh → check → real, as registered tasks."""
    return [
        {"name": f"{tag}: check", MODULE: args, "check_mode": True, "register": f"{tag}_check"},
        {"name": f"{tag}: real", MODULE: args, "register": f"{tag}_real"},
        {"name": f"{tag}: verify", "ansible.builtin.command": {"argv": verify}, "changed_when": False,
         "register": f"{tag}_verify"},
        {"name": f"{tag}: check again", MODULE: args, "check_mode": True, "register": f"{tag}_check2"},
        {"name": f"{tag}: real again", MODULE: args, "register": f"{tag}_real2"},
    ]


def assert_protocol(results: dict[str, Any], tag: str, actions: list[str], extra_real: list[str] | None = None,
                    ) -> dict[str, Any]:
    check, real = results[f"{tag}_check"], results[f"{tag}_real"]
    assert not check.get("failed"), check.get("msg")
    assert not real.get("failed"), real.get("msg")
    assert check["changed"] and check["actions"] == actions, (tag, check)
    assert real["changed"] and real["actions"] == actions + (extra_real or []), (tag, real)
    for key in ("name", "state", "autostart", "persistent"):
        assert check["domain"][key] == real["domain"][key], (tag, key, check["domain"], real["domain"])
    for again in (results[f"{tag}_check2"], results[f"{tag}_real2"]):
        assert not again.get("failed"), again.get("msg")
        assert not again["changed"] and again["actions"] == [], (tag, again)
        # a removed domain's UUID is only known to the run that removed it
        keys = ["name", "state", "autostart", "persistent"] + ([] if tag == "absent" else ["uuid"])
        assert {k: again["domain"][k] for k in keys} == {k: real["domain"][k] for k in keys}, (tag, again, real)
    return results[f"{tag}_verify"]


def virsh_argv(daemon: PrivateLibvirtd, *args: str) -> list[str]:
    return ["virsh", "-q", "-c", daemon.uri, *args]


# --- the idempotency protocol, state by state ---------------------------------------------------

def test_each_state_check_real_verify_check_real(libvirtd: PrivateLibvirtd, tmp_path: Path) -> None:
    name = "kvt-proto"
    disk = blank_disk(tmp_path / "proto.qcow2")
    xml = domain_xml(name, disk)
    base = {"uri": libvirtd.uri, "xml": xml}
    tasks = [
        *protocol("present", {**base, "state": "present", "autostart": True}, virsh_argv(libvirtd, "dominfo", name)),
        *protocol("paused", {**base, "state": "paused"}, virsh_argv(libvirtd, "domstate", name)),
        *protocol("running", {**base, "state": "running"}, virsh_argv(libvirtd, "domstate", name)),
        *protocol("shutdown", {"uri": libvirtd.uri, "name": name, "state": "shutdown", "wait_timeout": 3,
                               "force": True}, virsh_argv(libvirtd, "domstate", name)),
        *protocol("absent", {"uri": libvirtd.uri, "name": name, "state": "absent"},
                  virsh_argv(libvirtd, "list", "--all", "--name")),
    ]
    try:
        run = run_tasks(tasks, tmp_path)
        res = run.results
        assert res, run.output
        verify = assert_protocol(res, "present", ["define", "enable autostart"])
        assert re.search(r"State:\s+shut off", verify["stdout"])
        assert re.search(r"Autostart:\s+enable", verify["stdout"])
        assert res["present_real"]["domain"]["uuid"] and res["present_check"]["domain"]["uuid"] is None
        assert assert_protocol(res, "paused", ["start paused"])["stdout"].strip() == "paused"
        assert assert_protocol(res, "running", ["resume"])["stdout"].strip() == "running"
        # the blank guest ignores ACPI: after wait_timeout, force powers it off
        verify = assert_protocol(res, "shutdown", ["shutdown"],
                                 ["destroy (still running 3 s after the shutdown request)"])
        assert verify["stdout"].strip() == "shut off"
        verify = assert_protocol(res, "absent", ["undefine"])
        assert name not in verify["stdout"].split()
        assert res["absent_real"]["domain"]["state"] == "absent"
    finally:
        libvirtd.virsh("destroy", name, check=False)
        libvirtd.virsh("undefine", "--nvram", name, check=False)


def test_redefinition_keeps_uuid_and_mac(libvirtd: PrivateLibvirtd, tmp_path: Path) -> None:
    """A NIC without <mac> gets one from libvirt; a later update without <mac> or <uuid> keeps both,
    and --diff shows only what changed."""
    name = "kvt-ident"
    disk = blank_disk(tmp_path / "ident.qcow2")
    try:
        first = run_tasks([{"name": "define", MODULE: {"uri": libvirtd.uri, "xml": domain_xml(name, disk),
                                                       "state": "running"}, "register": "first"}], tmp_path)
        assert first.results["first"]["actions"] == ["define", "start"], first.output
        live = etree.fromstring(libvirtd.virsh("dumpxml", "--inactive", name).stdout.encode())
        mac = live.find("devices/interface/mac").get("address")
        uuid = live.findtext("uuid")
        xml_file = tmp_path / "bigger.xml"
        xml_file.write_text(domain_xml(name, disk, memory_mib=256))
        args = {"uri": libvirtd.uri, "xml": str(xml_file), "state": "running"}
        run = run_tasks([{"name": "grow", MODULE: args, "register": "grow"},
                         {"name": "again", MODULE: args, "register": "again"}], tmp_path, extra_args=["--diff"])
        grow, again = run.results["grow"], run.results["again"]
        assert grow["changed"] and grow["actions"] == ["redefine"], run.output
        assert "next start" in run.output  # the warning: the domain runs
        before, after = grow["diff"]["before"], grow["diff"]["after"]
        assert "<memory>134217728</memory>" in before and "<memory>268435456</memory>" in after
        assert before.replace("134217728", "268435456") == after, (before, after)
        assert "<address" not in before and "<alias" not in before  # libvirt's noise is not shown
        assert not again["changed"] and again["diff"]["before"] == again["diff"]["after"]
        redefined = etree.fromstring(libvirtd.virsh("dumpxml", "--inactive", name).stdout.encode())
        assert redefined.find("devices/interface/mac").get("address") == mac
        assert redefined.findtext("uuid") == uuid
        assert redefined.findtext("memory") == str(256 * 1024)
    finally:
        libvirtd.virsh("destroy", name, check=False)
        libvirtd.virsh("undefine", name, check=False)


def test_removing_a_disk_is_a_change(libvirt_conn: object, libvirtd: PrivateLibvirtd, tmp_path: Path) -> None:
    name = "kvt-twodisks"
    one, two = blank_disk(tmp_path / "one.qcow2"), blank_disk(tmp_path / "two.qcow2")
    disks = (f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{one}'/>"
             "<target dev='vda' bus='virtio'/></disk>")
    second = (f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{two}'/>"
              "<target dev='vdb' bus='virtio'/></disk>")
    try:
        ld.ensure_domain(ld.DomainRequest(uri=libvirtd.uri, xml=domain_xml(name, None, disk_xml=disks + second)),
                         conn=libvirt_conn)
        fewer = ld.DomainRequest(uri=libvirtd.uri, xml=domain_xml(name, None, disk_xml=disks), check_mode=True,
                                 diff=True)
        result = ld.ensure_domain(fewer, conn=libvirt_conn)
        assert result.actions == ["redefine"]
        assert str(two) in result.diff["before"] and str(two) not in result.diff["after"]
        same = ld.ensure_domain(ld.DomainRequest(uri=libvirtd.uri, xml=domain_xml(name, None,
                                                                                  disk_xml=disks + second)),
                                conn=libvirt_conn)
        assert same.actions == [] and not same.changed
    finally:
        libvirtd.virsh("undefine", name, check=False)


# --- failures: the error, its message, nothing left behind ----------------------------------------

def test_failures_say_what_and_leave_nothing(libvirtd: PrivateLibvirtd, tmp_path: Path) -> None:
    disk = blank_disk(tmp_path / "f.qcow2")
    owner = "kvt-owner"
    libvirtd_xml = tmp_path / "owner.xml"
    libvirtd_xml.write_text(domain_xml(owner, disk))
    libvirtd.virsh("define", str(libvirtd_xml))
    owner_uuid = libvirtd.virsh("domuuid", owner).stdout.strip()
    other_uuid = "6c0e2b5e-8d0a-4a8e-9a45-2f0d6f6c3c11"
    uri = libvirtd.uri
    bad_schema = domain_xml("kvt-bad", disk).replace("<vcpu>1</vcpu>", "<vcpu>one</vcpu>")
    cases = {
        "unreachable": {"uri": f"qemu:///system?socket={tmp_path}/no-such-socket", "xml": domain_xml("kvt-x", disk)},
        "not_xml": {"uri": uri, "xml": "<domain type='qemu'><name>kvt-bad</name>"},
        "schema": {"uri": uri, "xml": bad_schema},
        "schema_check": {"uri": uri, "xml": bad_schema},
        "name_taken": {"uri": uri, "xml": domain_xml(owner, disk, uuid=other_uuid)},
        "uuid_taken": {"uri": uri, "xml": domain_xml("kvt-thief", disk, uuid=owner_uuid)},
        "missing_disk": {"uri": uri, "xml": domain_xml("kvt-nodisk", tmp_path / "missing.qcow2")},
        "missing_volume": {"uri": uri, "xml": domain_xml("kvt-novol", None, disk_xml=(
            "<disk type='volume' device='disk'><driver name='qemu' type='raw'/>"
            "<source pool='kvt-nopool' volume='v1'/><target dev='vda' bus='virtio'/></disk>"))},
        "not_defined": {"uri": uri, "name": "kvt-nobody", "state": "running"},
        "no_console_log": {"uri": uri, "xml": domain_xml("kvt-nolog", disk), "state": "running",
                           "wait_for": {"console": "login:"}},
        "converted_check_mode": {"uri": uri, "converted": {"changed": True, "plan": {"domain_xml": "<domain/>"}}},
    }
    planned = {"changed": True, "plan": {"domain_xml": domain_xml("kvt-planned", tmp_path / "not-yet.qcow2")}}
    tasks = [{"name": key, MODULE: args, "register": key, **({"check_mode": True} if key == "schema_check" else {})}
             for key, args in cases.items()]
    # a check-mode conversion's plan, in check mode: its disks are not written yet, and that is fine
    tasks.append({"name": "planned", MODULE: {"uri": uri, "converted": planned}, "check_mode": True,
                  "register": "planned"})
    try:
        run = run_tasks(tasks, tmp_path)
        res = run.results
        for key in cases:
            assert res[key].get("failed"), (key, res[key])
            assert "Traceback" not in res[key]["msg"], (key, res[key]["msg"])
        assert "cannot connect to libvirt at qemu:///system?socket=" in res["unreachable"]["msg"]
        assert "no-such-socket" in res["unreachable"]["msg"] and "daemon" in res["unreachable"]["msg"]
        assert "not well-formed XML" in res["not_xml"]["msg"]
        # libvirt's own message, and in check mode the same schema's
        assert "libvirt refused the definition of kvt-bad" in res["schema"]["msg"]
        assert "failed to validate against schema" in res["schema"]["msg"]
        assert "does not match libvirt's schema" in res["schema_check"]["msg"]
        assert f"the name {owner} belongs to another domain, with UUID {owner_uuid}" in res["name_taken"]["msg"]
        assert f"the UUID {owner_uuid} belongs to another domain, {owner}" in res["uuid_taken"]["msg"]
        assert f"disk vda: {tmp_path}/missing.qcow2 does not exist" in res["missing_disk"]["msg"]
        assert "storage volume kvt-nopool/v1 does not exist" in res["missing_volume"]["msg"]
        assert "the domain kvt-nobody is not defined" in res["not_defined"]["msg"]
        assert "<serial><log file=...>" in res["no_console_log"]["msg"]
        assert "check-mode run of convert_guest" in res["converted_check_mode"]["msg"]
        assert not res["planned"].get("failed") and res["planned"]["actions"] == ["define"], res["planned"]
        # nothing left behind: only the owner exists, unchanged, and it did not start
        assert libvirtd.domains() == [owner]
        assert libvirtd.virsh("domuuid", owner).stdout.strip() == owner_uuid
    finally:
        for name in libvirtd.domains():
            libvirtd.virsh("destroy", name, check=False)
            libvirtd.virsh("undefine", name, check=False)


def test_a_failed_start_takes_back_the_definition(libvirt_conn: object, libvirtd: PrivateLibvirtd,
                                                  tmp_path: Path) -> None:
    """qemu refuses a disk that is not qcow2: a new domain is undefined again, an updated one restored."""
    name = "kvt-nostart"
    good = blank_disk(tmp_path / "good.qcow2")
    bad = tmp_path / "bad.qcow2"
    bad.write_bytes(b"not a qcow2 image")
    try:
        with pytest.raises(LibvirtError) as err:
            ld.ensure_domain(ld.DomainRequest(uri=libvirtd.uri, xml=domain_xml(name, bad, nic=False),
                                              state="running"), conn=libvirt_conn)
        assert f"cannot start the domain {name}" in str(err.value)
        assert "the domain defined by this task was removed again" in str(err.value)
        assert name not in libvirtd.domains()
        ld.ensure_domain(ld.DomainRequest(uri=libvirtd.uri, xml=domain_xml(name, good, nic=False)),
                         conn=libvirt_conn)
        before = libvirtd.virsh("dumpxml", "--inactive", name).stdout
        with pytest.raises(LibvirtError) as err:
            ld.ensure_domain(ld.DomainRequest(uri=libvirtd.uri, xml=domain_xml(name, bad, nic=False),
                                              state="running"), conn=libvirt_conn)
        assert "its previous definition was restored" in str(err.value)
        after = libvirtd.virsh("dumpxml", "--inactive", name).stdout
        # libvirt may list controllers in another order; everything else is as it was
        restored, original = (xc.normalize(etree.fromstring(x.encode())) for x in (after, before))
        assert xc.covers(restored, original)
        assert str(good) in after and str(bad) not in after
        assert libvirtd.virsh("domstate", name).stdout.strip() == "shut off"
    finally:
        libvirtd.virsh("undefine", name, check=False)


def test_shutdown_timeout_without_force_fails_and_leaves_it_running(libvirt_conn: object,
                                                                    libvirtd: PrivateLibvirtd,
                                                                    tmp_path: Path) -> None:
    name = "kvt-stubborn"
    disk = blank_disk(tmp_path / "s.qcow2")
    try:
        ld.ensure_domain(ld.DomainRequest(uri=libvirtd.uri, xml=domain_xml(name, disk), state="running"),
                         conn=libvirt_conn)
        with pytest.raises(LibvirtError) as err:
            ld.ensure_domain(ld.DomainRequest(uri=libvirtd.uri, name=name, state="shutdown", wait_timeout=2),
                             conn=libvirt_conn)
        assert f"the domain {name} did not shut down within 2 s" in str(err.value)
        assert "force: true" in str(err.value)
        assert libvirtd.virsh("domstate", name).stdout.strip() == "running"
    finally:
        libvirtd.virsh("destroy", name, check=False)
        libvirtd.virsh("undefine", name, check=False)


# --- waits -----------------------------------------------------------------------------------------

def test_running_waits_for_a_console_line(libvirt_conn: object, libvirtd: PrivateLibvirtd, tmp_path: Path) -> None:
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    if not kernels:
        pytest.skip("no kernel in /boot to boot directly")
    name = "kvt-console"
    log = tmp_path / "serial.log"
    xml = domain_xml(name, None, kernel=kernels[-1], serial_log=log, nic=False)
    try:
        result = ld.ensure_domain(ld.DomainRequest(uri=libvirtd.uri, xml=xml, state="running", wait_timeout=60,
                                                   wait_for=ld.WaitFor.parse({"console": r"Linux version \S+"})),
                                  conn=libvirt_conn)
        assert result.actions == ["define", "start"]
        assert result.wait["for"] == "console" and result.wait["match"].startswith("[")
        assert "Linux version" in result.wait["match"]
        libvirtd.virsh("destroy", name, check=False)
        with pytest.raises(LibvirtError) as err:
            ld.ensure_domain(ld.DomainRequest(uri=libvirtd.uri, xml=xml, state="running", wait_timeout=2,
                                              wait_for=ld.WaitFor.parse({"console": "no such line ever"})),
                             conn=libvirt_conn)
        assert "matched 'no such line ever'" in str(err.value) and "Last console lines" in str(err.value)
    finally:
        libvirtd.virsh("destroy", name, check=False)
        libvirtd.virsh("undefine", name, check=False)


def test_agent_wait_times_out_with_a_clear_message(libvirt_conn: object, libvirtd: PrivateLibvirtd,
                                                   tmp_path: Path) -> None:
    name = "kvt-agent"
    disk = blank_disk(tmp_path / "a.qcow2")
    try:
        with pytest.raises(LibvirtError) as err:
            ld.ensure_domain(ld.DomainRequest(uri=libvirtd.uri, xml=domain_xml(name, disk), state="running",
                                              wait_timeout=2, wait_for=ld.WaitFor.parse("agent")),
                             conn=libvirt_conn)
        assert f"the guest agent of {name} did not answer within 2 s" in str(err.value)
        assert "qemu-guest-agent" in str(err.value)
    finally:
        libvirtd.virsh("destroy", name, check=False)
        libvirtd.virsh("undefine", name, check=False)


# --- absent: NVRAM, managed save, snapshots, storage ---------------------------------------------

def test_absent_removes_nvram_and_managed_save(libvirt_conn: object, libvirtd: PrivateLibvirtd,
                                               tmp_path: Path) -> None:
    if not Path("/usr/share/OVMF/OVMF_CODE_4M.fd").exists() and not Path("/usr/share/OVMF/OVMF_CODE.fd").exists():
        pytest.skip("OVMF is not installed")
    name = "kvt-uefi"
    disk = blank_disk(tmp_path / "u.qcow2")
    nvram = libvirtd.base / "lib" / "qemu" / "nvram" / f"{name}_VARS.fd"
    save = libvirtd.base / "lib" / "qemu" / "save" / f"{name}.save"
    try:
        ld.ensure_domain(ld.DomainRequest(uri=libvirtd.uri, xml=domain_xml(name, disk, uefi=True, nic=False),
                                          state="running"), conn=libvirt_conn)
        libvirtd.virsh("managedsave", name)
        assert nvram.exists() and save.exists()
        check = ld.ensure_domain(ld.DomainRequest(uri=libvirtd.uri, name=name, state="absent", check_mode=True),
                                 conn=libvirt_conn)
        assert check.actions == ["undefine (with its UEFI NVRAM, managed save image)"]
        assert nvram.exists() and name in libvirtd.domains()
        real = ld.ensure_domain(ld.DomainRequest(uri=libvirtd.uri, name=name, state="absent"), conn=libvirt_conn)
        assert real.actions == check.actions
        assert name not in libvirtd.domains()
        assert not nvram.exists() and not save.exists()
        assert disk.exists()  # not a pool volume, and remove_storage was not asked for
    finally:
        libvirtd.virsh("undefine", "--nvram", "--managed-save", name, check=False)


def test_absent_with_snapshots_and_remove_storage(libvirt_conn: object, libvirtd: PrivateLibvirtd,
                                                  dir_pool: Any, tmp_path: Path) -> None:
    name = "kvt-snap"
    libvirtd.virsh("vol-create-as", dir_pool.name, f"{name}.qcow2", "64M", "--format", "qcow2")
    libvirtd.virsh("vol-create-as", dir_pool.name, f"{name}-shared.qcow2", "16M", "--format", "qcow2")
    outside = blank_disk(tmp_path / "outside.qcow2")
    disks = (f"<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
             f"<source pool='{dir_pool.name}' volume='{name}.qcow2'/><target dev='vda' bus='virtio'/></disk>"
             f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
             f"<source file='{dir_pool.path}/{name}-shared.qcow2'/><target dev='vdb' bus='virtio'/></disk>"
             f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{outside}'/>"
             "<target dev='vdc' bus='virtio'/></disk>"
             "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='sda' bus='sata'/>"
             "<readonly/></disk>")
    sharer = "kvt-sharer"
    shared_disk = (f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                   f"<source file='{dir_pool.path}/{name}-shared.qcow2'/><target dev='vda' bus='virtio'/></disk>")
    try:
        ld.ensure_domain(ld.DomainRequest(uri=libvirtd.uri, xml=domain_xml(name, None, disk_xml=disks)),
                         conn=libvirt_conn)
        ld.ensure_domain(ld.DomainRequest(uri=libvirtd.uri, xml=domain_xml(sharer, None, disk_xml=shared_disk)),
                         conn=libvirt_conn)
        libvirtd.virsh("snapshot-create-as", name, "before-migration")
        request = ld.DomainRequest(uri=libvirtd.uri, name=name, state="absent", remove_storage=True)
        result = ld.ensure_domain(request, conn=libvirt_conn)
        assert result.actions == ["undefine (with its metadata of 1 snapshot)",
                                  f"delete volume {dir_pool.name}/{name}.qcow2"]
        assert any("vdb" in w and "another domain" in w for w in result.warnings), result.warnings
        assert any("vdc" in w and "not a volume" in w for w in result.warnings), result.warnings
        assert name not in libvirtd.domains()
        assert not (dir_pool.path / f"{name}.qcow2").exists()
        assert (dir_pool.path / f"{name}-shared.qcow2").exists() and outside.exists()
        again = ld.ensure_domain(request, conn=libvirt_conn)
        assert not again.changed and again.domain["state"] == "absent"
    finally:
        for dom in (name, sharer):
            libvirtd.virsh("undefine", "--snapshots-metadata", dom, check=False)
        for vol in (f"{name}.qcow2", f"{name}-shared.qcow2"):
            libvirtd.virsh("vol-delete", "--pool", dir_pool.name, vol, check=False)


# --- the test driver: a fast extra check, not a substitute --------------------------------------

def test_test_driver_round_trip() -> None:
    pytest.importorskip("libvirt")
    uri = "test:///default"
    conn = connect(uri)
    try:
        xml = domain_xml("kvt-testdrv", "/nonexistent/disk.qcow2", nic=False)
        first = ld.ensure_domain(ld.DomainRequest(uri=uri, xml=xml, state="running"), conn=conn)
        assert first.actions == ["define", "start"] and first.domain["state"] == "running"
        again = ld.ensure_domain(ld.DomainRequest(uri=uri, xml=xml, state="running"), conn=conn)
        assert again.actions == []
        gone = ld.ensure_domain(ld.DomainRequest(uri=uri, name="kvt-testdrv", state="absent"), conn=conn)
        assert gone.actions == ["destroy", "undefine"]
    finally:
        conn.close()


# --- the comparison rules, on XML alone ------------------------------------------------------------

def _norm(xml: str) -> Any:
    return xc.normalize(etree.fromstring(xml.encode()), {"q35": "pc-q35-7.2"})


def test_comparison_rules_without_a_daemon() -> None:
    stored = _norm("""<domain type='qemu'><name>x</name><uuid>6C0E2B5E8D0A4A8E9A452F0D6F6C3C11</uuid>
      <memory unit='KiB'>1048576</memory><os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
      <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>
        <controller type='pci' index='0' model='pcie-root'/>
        <disk type='file' device='disk'><source file='/b'/><target dev='vdb' bus='virtio'/>
          <address type='pci' domain='0x0000' bus='0x05' slot='0x00' function='0x0'/></disk>
        <disk type='file' device='disk'><source file='/a'/><target dev='vda' bus='virtio'/></disk>
        <interface type='user'><mac address='52:54:00:AA:BB:CC'/><model type='virtio'/></interface>
        <serial type='pty'><target type='isa-serial' port='0'/></serial>
        <console type='pty'><target type='serial' port='0'/></console>
        <input type='mouse' bus='ps2'/><memballoon model='virtio'/></devices></domain>""")
    desired = _norm("""<domain type='qemu'><name>x</name><memory unit='GiB'>1</memory>
      <os><type machine='q35'>hvm</type></os><devices>
        <disk type='file' device='disk'><source file='/a'/><target dev='vda'/></disk>
        <disk type='file' device='disk'><source file='/b'/><target dev='vdb'/>
          <address type='pci' domain='0' bus='5' slot='0' function='0'/></disk>
        <interface type='user'><model type='virtio'/></interface>
        <console type='pty'/></devices></domain>""")
    # units, machine alias, order, number spellings, libvirt's additions: all the same
    uuid, macs = xc.identity_to_keep(desired, stored)
    assert uuid == "6c0e2b5e-8d0a-4a8e-9a45-2f0d6f6c3c11" and macs == {0: "52:54:00:aa:bb:cc"}
    xc.apply_identity(desired, uuid, macs)
    assert xc.covers(stored, desired)
    # a disk fewer is a change, and the diff's "before" shows it
    fewer = xc.normalize(desired)
    fewer.find("devices").remove(fewer.find("devices/disk[2]"))
    assert not xc.covers(stored, fewer)
    before = xc.to_text(xc.project(stored, fewer))
    assert "/b" in before and "<address" not in before and "emulator" not in before
    # a different value in what the desired XML says is a change
    bigger = xc.normalize(desired)
    bigger.find("memory").text = str(2 << 30)
    assert not xc.covers(stored, bigger)
