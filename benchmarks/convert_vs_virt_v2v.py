"""convert_guest's engine against the reference virt-v2v on the same guest, in one run.

The VMware-style Debian 12 test guest (raw disk) is converted by both to
``-o local`` raw output, in two forms: the VMware template (``MODULES=list``
initramfs without virtio, rebuilt by both) and Debian's default
``MODULES=most`` (virtio already in it: kept by convert_guest). Printed: both times, their ratio (ours / virt-v2v),
bytes each wrote, and whether each output boots on virtio-blk + virtio-net
(the marker line from the guest's console). Goal: ratio < 1 and no more bytes.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.conversion import ConvertOptions, run_convert
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec
from benchmarks.common import libguestfs_env, report, timed
from tests.guests import boot, vmware_debian


def bytes_on_disk(paths: list[Path]) -> int:
    return sum(os.stat(p).st_blocks * 512 for p in paths)


def compare(layout: str) -> dict[str, object]:
    guest = vmware_debian.build(layout)
    with tempfile.TemporaryDirectory(prefix="kvmigrate-bench-", dir="/var/tmp") as tmp:
        ref_dir = Path(tmp, "virt-v2v")
        ours_dir = Path(tmp, "ours")
        ref_dir.mkdir()

        def reference() -> None:
            subprocess.run(["virt-v2v", "-i", "disk", str(guest.raw), "-o", "local", "-os", str(ref_dir),
                            "-of", "raw", "-on", "ref"], check=True, capture_output=True,
                           env=libguestfs_env())

        def ours() -> Any:
            return run_convert(SourceSpec(input="disk", path=[str(guest.raw)], format="raw", work_dir=tmp),
                               ConvertOptions(output="local", output_dir=str(ours_dir), name="ours"))

        ref_seconds, _ref = timed(reference)
        our_seconds, result = timed(ours)
        ref_disks = sorted(ref_dir.glob("ref-sd*"))
        our_disks = sorted(ours_dir.glob("ours-vd*"))
        # virt-v2v gives a bare disk's NIC no MAC of its own; ours has the MAC its domain XML names.
        our_mac = re.findall(r"<mac address=[\"']([0-9a-f:]+)[\"']", result.target["domain_xml"])
        ref_boot = boot.boot(ref_disks, "raw", disk_bus="virtio-blk", nic_model="virtio", mac=guest.mac,
                             timeout=240)
        our_boot = boot.boot(our_disks, "raw", disk_bus="virtio-blk", nic_model="virtio",
                             mac=our_mac[0] if our_mac else guest.mac, timeout=240)
        initramfs = next((step for step in result.conversion if "initramfs" in step), "-")
        return {
            "guest": f"{guest.raw} ({guest.name}, initramfs MODULES={SPECS_INITRAMFS.get(layout, 'list')})",
            "virt-v2v seconds": round(ref_seconds, 1),
            "convert_guest seconds": round(our_seconds, 1),
            "ratio (ours / virt-v2v)": round(our_seconds / ref_seconds, 3),
            "convert_guest initramfs": initramfs,
            "virt-v2v bytes written": bytes_on_disk(ref_disks),
            "convert_guest bytes written": bytes_on_disk(our_disks),
            "virt-v2v output boots": f"{ref_boot.booted} ({ref_boot.reason})",
            "convert_guest output boots": f"{our_boot.booted} ({our_boot.reason})",
        }


SPECS_INITRAMFS = {layout: spec.initramfs for layout, spec in vmware_debian.SPECS.items()}


def main() -> None:
    # plain: the VMware template's MODULES=list initramfs (both rebuild it); most: Debian's default
    # MODULES=most, which already has the virtio drivers (convert_guest keeps it, virt-v2v rebuilds it)
    report("convert_vs_virt_v2v", compare("plain"))
    report("convert_vs_virt_v2v_most", compare("most"))


if __name__ == "__main__":
    main()
