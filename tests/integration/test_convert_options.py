"""convert_guest on the convertible phony RHEL-like guest: every kernel, consoles, NIC MACs,
guest-agent packages, check mode and output qemu for UEFI — each checked by reopening
what was written (or proving nothing was).

The convertible guest's ``rpm``/``dracut``/``grub2-mkconfig`` are recording stand-ins
(see tests/guests/convertible.py); libguestfs, qemu-img and qemu are real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.appliance import Appliance, DriveSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.conversion import ConvertOptions, run_convert
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import ConversionError, V2VError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.qemu_cmd import OVMF_VARS
from tests.guests import convertible
from tests.hashing import tree_hashes

pytestmark = pytest.mark.integration

OLD_KERNEL = "5.14.0-284.11.1.el9_2.x86_64"
NO_VIRTIO_KERNEL = "4.18.0-0.phony.novirtio.x86_64"


def _copy_guest(tmp_path: Path) -> tuple[convertible.PhonyGuest, list[Path]]:
    guest = convertible.build("phony-rocky9")
    disks = []
    for disk in guest.disks:
        target = tmp_path / disk.name
        subprocess.run(["cp", "--sparse=always", str(disk), str(target)], check=True)
        disks.append(target)
    return guest, disks


@pytest.fixture(scope="module")
def three_kernel_guest(tmp_path_factory: pytest.TempPathFactory) -> tuple[convertible.PhonyGuest, list[Path]]:
    """The convertible Rocky guest plus an older kernel with virtio drivers, one without, and a Xen console."""
    guest, disks = _copy_guest(tmp_path_factory.mktemp("three-kernels"))
    with Appliance([DriveSpec(path=str(d), format=guest.format, readonly=False) for d in disks]) as g:
        root = g.inspect_os()[0]
        for mountpoint, device in sorted(g.inspect_get_mountpoints(root).items(), key=lambda kv: len(kv[0])):
            g.mount(device, mountpoint)
        for version, virtio in ((OLD_KERNEL, True), (NO_VIRTIO_KERNEL, False)):
            g.write(f"/boot/vmlinuz-{version}", b"phony kernel\n")
            g.write(f"/boot/initramfs-{version}.img", b"phony initramfs\n")
            g.mkdir_p(f"/lib/modules/{version}/kernel/fs")
            g.write(f"/lib/modules/{version}/kernel/fs/ext4.ko.xz", b"")
            if virtio:
                for rel in ("block/virtio_blk", "scsi/virtio_scsi", "net/virtio_net", "virtio/virtio_pci"):
                    path = f"/lib/modules/{version}/kernel/drivers/{rel}.ko.xz"
                    g.mkdir_p(os.path.dirname(path))
                    g.write(path, b"")
        entry = g.glob_expand("/boot/loader/entries/*.conf")[0]
        g.write(entry, g.cat(entry).replace(" ro ", " ro console=hvc0 ").encode())
        g.mkdir_p("/etc/kernel")
        g.write("/etc/kernel/cmdline", b"root=/dev/sda2 ro console=hvc0\n")
        g.umount_all()
    return guest, disks


def _reopen(paths: list[str], fmt: str = "qcow2", pins: tuple[str, ...] = ()) -> dict[str, str]:
    """Read back what the test needs from a converted disk, read-only."""
    with Appliance([DriveSpec(path=p, format=fmt) for p in paths]) as g:
        root = g.inspect_os()[0]
        for mountpoint, device in sorted(g.inspect_get_mountpoints(root).items(), key=lambda kv: len(kv[0])):
            g.mount_ro(device, mountpoint)
        files = {"log": convertible.TOOL_LOG, "cmdline": "/etc/kernel/cmdline",
                 "firstboot": "/etc/systemd/system/kvmigrate-firstboot.service"}
        found = {k: g.cat(v) for k, v in files.items() if g.exists(v)}
        found["bls"] = "".join(g.cat(p) for p in g.glob_expand("/boot/loader/entries/*.conf"))
        found["links"] = "".join(g.cat(p) for p in pins if g.exists(p))
        found["staging"] = str(bool(g.exists("/var/tmp/kvmigrate-guest-agent")))
        return found


def test_every_virtio_kernel_gets_an_initramfs_and_consoles_move_to_ttys0(three_kernel_guest, tmp_path: Path) -> None:
    guest, disks = three_kernel_guest
    before = tree_hashes(*disks)
    result = run_convert(SourceSpec(input="disk", path=[str(d) for d in disks], format=guest.format,
                                    work_dir=str(tmp_path / "w")),
                         ConvertOptions(output="local", output_dir=str(tmp_path / "out"), output_format="qcow2"))
    assert tree_hashes(*disks) == before
    new = guest.details["kernel"]
    assert f"rebuilt the initramfs of {new}, {OLD_KERNEL} with virtio_pci virtio_blk virtio_scsi virtio_net" \
        in result.conversion, result.conversion
    assert any(NO_VIRTIO_KERNEL in w and "cannot boot on KVM" in w for w in result.warnings), result.warnings
    # input disk has no NIC metadata: the MAC comes from the guest's own NetworkManager keyfile
    mac = guest.details["mac"].lower()
    assert f"gave NIC 0 the MAC {mac} (guest configuration)" in result.conversion, result.conversion
    assert result.network and result.network[0]["interface"] == "ens192"
    seen = _reopen([d["path"] for d in result.target["disks"]], pins=(result.network[0]["file"],))
    log = seen["log"]
    for version in (new, OLD_KERNEL):
        assert f"dracut -f --add-drivers virtio_pci virtio_blk virtio_scsi virtio_net /boot/initramfs-{version}.img " \
               f"{version}" in log, log
    assert NO_VIRTIO_KERNEL not in log
    assert "console=ttyS0" in seen["bls"] and "hvc0" not in seen["bls"]
    assert "console=ttyS0" in seen["cmdline"] and "/dev/vda2" in seen["cmdline"]
    assert (f"MACAddress={mac}" in seen["links"] and "Name=ens192" in seen["links"]) or (
        f'ATTR{{address}}=="{mac}", NAME="ens192"' in seen["links"]), seen["links"]
    # the conversion log names each command run in the guest, with the phases
    text = Path(result.log_path).read_text()
    assert f"in the guest: dracut -f --add-drivers virtio_pci virtio_blk virtio_scsi virtio_net " \
           f"/boot/initramfs-{OLD_KERNEL}.img" in text
    assert "phase copy:" in text and text.rstrip().endswith("done")


def test_guest_agent_packages_are_installed_offline(tmp_path: Path) -> None:
    guest, disks = _copy_guest(tmp_path)
    packages = tmp_path / "agent"
    packages.mkdir()
    for name in ("qemu-guest-agent-8.2.0-11.el9.x86_64.rpm", "liburing-2.5-1.el9.x86_64.rpm"):
        (packages / name).write_bytes(b"phony rpm payload\n")
    (packages / "README").write_text("not a package\n")
    result = run_convert(SourceSpec(input="disk", path=[str(d) for d in disks], format=guest.format,
                                    work_dir=str(tmp_path / "w")),
                         ConvertOptions(output="local", output_dir=str(tmp_path / "out"), output_format="qcow2",
                                        guest_agent_packages=str(packages)))
    step = f"installed qemu-guest-agent from {packages} (liburing-2.5-1.el9.x86_64.rpm, " \
           "qemu-guest-agent-8.2.0-11.el9.x86_64.rpm)"
    assert step in result.conversion, result.conversion
    assert not any("first boot" in w for w in result.warnings)
    seen = _reopen([d["path"] for d in result.target["disks"]])
    assert ("rpm -U --replacepkgs /var/tmp/kvmigrate-guest-agent/liburing-2.5-1.el9.x86_64.rpm "
            "/var/tmp/kvmigrate-guest-agent/qemu-guest-agent-8.2.0-11.el9.x86_64.rpm") in seen["log"]
    assert seen["staging"] == "False", "the uploaded packages were left in the guest"
    assert "firstboot" not in seen


def test_guest_agent_packages_of_the_wrong_family_fail_and_leave_nothing(tmp_path: Path) -> None:
    guest, disks = _copy_guest(tmp_path)
    before = tree_hashes(*disks)
    packages = tmp_path / "agent"
    packages.mkdir()
    (packages / "qemu-guest-agent_7.2+dfsg-7_amd64.deb").write_bytes(b"phony deb\n")
    out = tmp_path / "out"
    with pytest.raises(ConversionError) as err:
        run_convert(SourceSpec(input="disk", path=[str(d) for d in disks], format=guest.format,
                               work_dir=str(tmp_path / "w")),
                    ConvertOptions(output="local", output_dir=str(out), guest_agent_packages=str(packages)))
    message = str(err.value)
    assert "guest_agent_packages has no .rpm packages for this redhat-family guest" in message
    assert err.value.phase == "convert"
    assert not out.exists()
    assert tree_hashes(*disks) == before
    data = err.value.to_dict()
    assert data["phase"] == "convert" and data["log_path"].endswith("conversion.log")
    log = Path(data["log_path"]).read_text()
    assert "failed in phase convert" in log and "no .rpm packages" in log
    status = json.loads((Path(data["log_path"]).parent / "status.json").read_text())
    assert status["state"] == "failed" and status["phase"] == "convert"


def test_guest_agent_packages_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(V2VError, match="guest_agent_packages is not a directory"):
        run_convert(SourceSpec(input="disk", path=[str(tmp_path / "x.img")], work_dir=str(tmp_path / "w")),
                    ConvertOptions(output="null", guest_agent_packages=str(tmp_path / "missing")))
    assert not (tmp_path / "w").exists()


def test_check_mode_writes_nothing(tmp_path: Path) -> None:
    guest, disks = _copy_guest(tmp_path)
    work, out = tmp_path / "w", tmp_path / "out"
    work.mkdir()
    result = run_convert(SourceSpec(input="disk", path=[str(d) for d in disks], format=guest.format,
                                    work_dir=str(work)),
                         ConvertOptions(output="local", output_dir=str(out)), check_mode=True)
    assert result.changed and result.plan is not None
    assert any(s.startswith("gave NIC 0 the MAC") for s in result.plan.steps)
    assert result.log_path is None
    assert list(work.iterdir()) == [], "check mode left files in the work directory"
    assert not out.exists()


def _libvirt_xml_uefi(path: Path, disk: Path, fmt: str) -> None:
    path.write_text(f"""<domain type='kvm'>
  <name>efi01</name>
  <memory unit='MiB'>1024</memory>
  <vcpu>1</vcpu>
  <os firmware='efi'><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='{fmt}'/>
      <source file='{disk}'/>
      <target dev='sda' bus='sata'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:4e:00:01'/>
      <source network='default'/>
      <model type='e1000'/>
    </interface>
  </devices>
</domain>
""")


def test_output_qemu_for_a_uefi_guest_gets_its_own_vars_and_qemu_accepts_it(tmp_path: Path) -> None:
    guest, disks = _copy_guest(tmp_path)
    xml = tmp_path / "efi01.xml"
    _libvirt_xml_uefi(xml, disks[0], guest.format)
    before = tree_hashes(xml, *disks)
    out = tmp_path / "out"
    result = run_convert(SourceSpec(input="libvirtxml", path=[str(xml)], work_dir=str(tmp_path / "w")),
                         ConvertOptions(output="qemu", output_dir=str(out), output_format="qcow2"))
    assert tree_hashes(xml, *disks) == before
    nvram = out / "efi01-VARS.fd"
    assert result.target["uefi_nvram"] == str(nvram)
    assert nvram.read_bytes() == Path(OVMF_VARS).read_bytes()
    argv = result.target["qemu_command"]
    assert f"if=pflash,format=raw,unit=1,file={nvram}" in argv
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["efi01-vda.qcow2", "efi01.xml", "efi01.sh", "efi01-VARS.fd", ".efi01.kvmigrate.json"])
    # qemu itself accepts the command (firmware files, disks, devices): paused, it stays up until killed
    script = result.target["qemu_script"]
    proc = subprocess.Popen([script, "-S"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        rc = proc.wait(timeout=8)
        pytest.fail(f"qemu exited ({rc}) instead of running: {proc.stdout.read() if proc.stdout else ''}")
    except subprocess.TimeoutExpired:
        pass
    finally:
        proc.kill()
        proc.wait()
    assert shutil.which("qemu-system-x86_64")
