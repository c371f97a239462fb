"""P2V end to end: a "physical machine" (network namespace) offers the VMware-style Debian guest's raw disk
as its test disk; the "conversion server" (another namespace, real sshd) converts it through the SSH
reverse tunnels with convert_guest input p2v, and the result BOOTS on virtio (the guest's marker line).

Both sides run through ansible-playbook. The source image is hashed before and after.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.guests import boot
from tests.hashing import sha256
from tests.p2v_net import listening_ports, netns_processes, p2v_network, run_tasks_in_netns, sshd_in_netns

pytestmark = pytest.mark.e2e


def test_p2v_converts_through_the_tunnel_and_boots(vmware_guest, tmp_path: Path) -> None:
    source_hash = sha256(vmware_guest.raw)
    post_marker = tmp_path / "post-ran"
    # The physical NIC has the guest's MAC, so the conversion can pin ens192 to it.
    with p2v_network(physical_mac=vmware_guest.mac) as net, \
            sshd_in_netns(net.server, net.server_ip, tmp_path / "sshd") as sshd:
        prepare = {"kvmigrate.v2v.prepare_p2v_host": {
            "cmdline": f"BOOT_IMAGE=/vmlinuz ip=dhcp p2v.server={net.server_ip} p2v.username=root "
                       f"p2v.name={vmware_guest.name} p2v.vcpu=1 p2v.memory=1G p2v.interfaces={net.physical_if} "
                       f"p2v.network={net.physical_if}:default p2v.o=local p2v.post=\"touch {post_marker}\"",
            "private_key": sshd.client_key, "host_key_fingerprint": [sshd.host_key_fingerprint],
            "test_disk": str(vmware_guest.raw), "keepalive_interval": 10, "state_dir": str(tmp_path / "state")}}
        physical = run_tasks_in_netns(net.physical, [{"name": "prepare", **prepare, "register": "p2v"}], tmp_path)
        assert physical.rc == 0 and not physical.results["p2v"].get("failed"), physical.output
        p2v = physical.results["p2v"]
        remote = Path(p2v["remote_dir"])
        assert p2v["conversion_settings"] == {"output": "local"}

        out = tmp_path / "out"
        convert = {"kvmigrate.v2v.convert_guest": {"input": "p2v", "path": str(remote), "output": "local",
                                                   "output_dir": str(out), "work_dir": str(tmp_path / "work")}}
        started = time.monotonic()
        server = run_tasks_in_netns(net.server, [{"name": "convert", **convert, "register": "conv"}], tmp_path)
        seconds = time.monotonic() - started
        assert server.rc == 0 and not server.results["conv"].get("failed"), server.output
        conv = server.results["conv"]
        assert conv["changed"] is True and conv["source"]["input"] == "p2v"
        assert conv["source"]["disks"][0]["path"] == f"nbd://127.0.0.1:{p2v['ports'][0]['remote_port']}"
        assert any("open-vm-tools" in step for step in conv["conversion"])
        assert any(f"{vmware_guest.nic}={vmware_guest.mac.lower()}" in step for step in conv["conversion"])
        status = json.loads((remote / "status").read_text())
        assert status["state"] == "done", status
        assert "conversion finished" in (remote / "virt-v2v-conversion-log.txt").read_text()
        print(f"p2v conversion through the tunnel: {seconds:.1f} s, phases {conv['phases']}")

        # The supervisor sees 'done', runs post, and stops the tunnels and the NBD server.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (netns_processes(net.physical) or not post_marker.exists()):
            time.sleep(0.5)
        assert post_marker.exists()
        assert netns_processes(net.physical) == []
        assert [p for p in listening_ports(net.server) if p.startswith("127.0.0.1:")] == []
        shutil.rmtree(remote)

    disks = [d["path"] for d in conv["target"]["disks"]]
    result = boot.boot(disks, "raw", disk_bus="virtio-blk", nic_model="virtio", mac=vmware_guest.mac, timeout=300)
    assert result.booted, f"converted guest did not boot: {result.reason}\n{result.log_path.read_text()[-3000:]}"
    marker = result.marker
    assert marker is not None and marker.hostname == vmware_guest.hostname and marker.root == "/dev/vda1"
    nic = marker.nic(vmware_guest.nic)
    assert nic is not None and nic.mac == vmware_guest.mac.lower() and vmware_guest.address in nic.addresses
    assert sha256(vmware_guest.raw) == source_hash
