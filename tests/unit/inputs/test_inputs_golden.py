"""Golden files: every sample input parses to exactly its recorded Source.

Each sample under tests/unit/data (VMX, OVF, libvirt XML, and the
virt-v2v conformance samples) has ``golden/<kind>/<stem>.json`` holding
``Source.to_dict()``. After an intended change, regenerate them with::

    KVMIGRATE_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/unit/inputs -q

and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.libvirtxml import parse_domain_xml
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.ova import parse_ovf
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.vmx import decode_vmx, parse_vmx

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parent.parent / "data"
GOLDEN = DATA / "golden"
REGEN = os.environ.get("KVMIGRATE_REGEN_GOLDEN") == "1"


def _samples() -> list[tuple[str, Path]]:
    samples = [("vmx", p) for p in sorted((DATA / "vmx").glob("*.vmx"))]
    samples += [("ovf", p) for p in sorted((DATA / "ovf").glob("*.ovf"))]
    samples += [("libvirt", p) for p in sorted((DATA / "libvirt").glob("*.xml"))]
    samples += [("conformance", p) for p in sorted((DATA / "conformance" / "virt-v2v").glob("*.vmx"))]
    samples += [("conformance", p) for p in sorted((DATA / "conformance" / "virt-v2v").glob("*.ovf"))]
    return samples


def parse_sample(path: Path) -> dict[str, Any]:
    """Parse one sample the pure way; disk paths must not depend on the test machine."""
    data = path.read_bytes()
    if path.suffix == ".vmx":
        source = parse_vmx(decode_vmx(data), vmx_dir=f"/vmfs/volumes/datastore1/{path.stem}",
                           default_name=path.stem)
    elif path.suffix == ".ovf":
        source, _refs = parse_ovf(data)
    else:
        source = parse_domain_xml(data)
    return source.to_dict()


SAMPLES = _samples()


def test_there_are_enough_samples() -> None:
    kinds = [kind for kind, _path in SAMPLES]
    assert kinds.count("vmx") >= 7
    assert kinds.count("ovf") >= 2
    assert kinds.count("libvirt") >= 3
    assert kinds.count("conformance") == 6


@pytest.mark.parametrize(("kind", "path"), SAMPLES, ids=[f"{k}/{p.name}" for k, p in SAMPLES])
def test_golden(kind: str, path: Path) -> None:
    actual = parse_sample(path)
    golden = GOLDEN / kind / f"{path.stem}.json"
    if REGEN:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(json.dumps(actual, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    assert golden.is_file(), f"no golden file {golden}; run with KVMIGRATE_REGEN_GOLDEN=1 and review it"
    assert actual == json.loads(golden.read_text(encoding="utf-8"))


def test_no_stale_golden_files() -> None:
    expected = {GOLDEN / kind / f"{path.stem}.json" for kind, path in SAMPLES}
    stale = sorted(str(p.relative_to(GOLDEN)) for p in GOLDEN.rglob("*.json") if p not in expected)
    assert not stale, f"golden files without a sample: {stale}"
