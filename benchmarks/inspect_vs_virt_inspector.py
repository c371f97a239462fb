"""inspect_guest's engine against virt-inspector on the same disk, in one run.

Both open the disk read-only in one libguestfs appliance and inspect the OS;
ours also lists kernels, network configuration and free space. The appliance
is warmed once first so neither pays for building it.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.pipeline import run_inspect
from benchmarks.common import alternate, libguestfs_env, report
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
    rounds = int(os.environ.get("KVMIGRATE_BENCH_ROUNDS", "3"))
    ref, our = alternate(reference, ours, rounds)
    ref_seconds, our_seconds = statistics.median(ref), statistics.median(our)
    report("inspect_vs_virt_inspector", {
        "disk": disk,
        "rounds (interleaved)": rounds,
        "virt-inspector seconds": [round(t, 2) for t in ref],
        "inspect_guest seconds": [round(t, 2) for t in our],
        "median ratio (ours / reference)": round(our_seconds / ref_seconds, 3),
    })


if __name__ == "__main__":
    main()
