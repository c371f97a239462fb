"""roles/conversion_host through its molecule scenario on this machine (the default driver, local connection).

The scenario installs nothing new here (every package is present, so the package
task is a no-op that needs no repository), checks the host, warms the appliance,
proves idempotence, and checks that an unmet requirement fails in one message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "conversion_host"

pytestmark = pytest.mark.integration


def test_molecule_default_scenario() -> None:
    if os.geteuid() != 0:
        pytest.skip("the scenario installs packages and warms the appliance as root")
    bin_dir = Path(sys.executable).parent
    molecule = bin_dir / "molecule"
    if not molecule.exists():
        pytest.skip("molecule is not installed in this environment (requirements-dev.txt)")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_NOCOLOR="1", NO_COLOR="1",
               PATH=f"{bin_dir}:{os.environ.get('PATH', '')}", KVMIGRATE_ACCEL="")
    env.pop("KVMIGRATE_ACCEL")
    proc = subprocess.run([str(molecule), "test"], cwd=ROLE, env=env, capture_output=True, text=True,
                          check=False, timeout=1200)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    for action in ("create", "converge", "idempotence", "verify", "destroy"):
        assert f"{action}: Executed: Successful" in output, output[-6000:]
    assert not Path("/var/tmp/kvmigrate-molecule-conversion-host").exists()
