"""inspect_guest's engine against virt-inspector on the same disk, in one run.

Both open the disk read-only in one libguestfs appliance and inspect the OS;
ours also lists kernels, network configuration and free space. The appliance
is warmed once first so neither pays for building it.
"""

from __future__ import annotations

import subprocess
import tempfile

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.pipeline import run_inspect
from benchmarks.common import libguestfs_env, report, timed
from tests.guests import vmware_debian


def main() -> None:
    guest = vmware_debian.build()
    disk = str(guest.raw)
    env = libguestfs_env()

    def reference() -> None:
        subprocess.run(["virt-inspector", "--format=raw", "-a", disk], check=True, capture_output=True, env=env)

    def ours() -> None:
        with tempfile.TemporaryDirectory() as work:
            run_inspect(SourceSpec(input="disk", path=[disk], format="raw", work_dir=work))

    reference()  # warm the appliance cache
    ref_seconds, _ref = timed(reference)
    our_seconds, _ours = timed(ours)
    report("inspect_vs_virt_inspector", {
        "disk": disk,
        "virt-inspector seconds": round(ref_seconds, 2),
        "inspect_guest seconds": round(our_seconds, 2),
        "ratio (ours / reference)": round(our_seconds / ref_seconds, 3),
    })


if __name__ == "__main__":
    main()
