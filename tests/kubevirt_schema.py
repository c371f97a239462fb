"""Validate KubeVirt VirtualMachine manifests against KubeVirt's API types (for tests).

The types are those of the npm package ``@kubevirt-ui/kubevirt-api`` (TypeScript generated from KubeVirt's
OpenAPI), read with the TypeScript compiler by ``tests/kubevirt_schema/validate.js``. ``scripts/setup.sh``
installs both, pinned by ``tests/kubevirt_schema/package-lock.json``, into ``.build/kubevirt-schema``.

Every field of the manifest must exist on its type at that place (unknown and misplaced fields fail: KubeVirt's
OpenAPI leaves ``additionalProperties`` open, the validator closes it), required fields must be there, scalars
must have the declared JSON type (quantities such as ``"2048Mi"`` are strings), and the values KubeVirt only
documents in prose (disk bus, interface model, hostDisk type, runStrategy, quantities) must be valid.

    errors = validate_virtual_machine(manifest)      # [] when valid; each error starts with the field's path
    assert not errors, "\\n".join(errors)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PACKAGE_DIR = REPO / "tests" / "kubevirt_schema"
VALIDATOR = PACKAGE_DIR / "validate.js"
# Where setup.sh runs `npm ci`; the stamp holds the hash of package.json + package-lock.json it installed.
MODULES_DIR = Path(os.environ.get("KVMIGRATE_KUBEVIRT_SCHEMA_DIR") or REPO / ".build" / "kubevirt-schema")
STAMP = MODULES_DIR / ".kvmigrate-lock"
TIMEOUT = 300.0


class KubevirtSchemaUnavailable(RuntimeError):
    """Node.js or the installed KubeVirt types are missing: run `make setup`."""


def _lock_hash() -> str:
    data = (PACKAGE_DIR / "package.json").read_bytes() + (PACKAGE_DIR / "package-lock.json").read_bytes()
    return hashlib.sha256(data).hexdigest()


def tooling_problem() -> str | None:
    """Why the validator cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node (Node.js) is not installed; `make setup` installs it"
    if not STAMP.is_file() or STAMP.read_text().strip() != _lock_hash():
        return f"the KubeVirt API types are not installed (or are stale) in {MODULES_DIR}; run `make setup`"
    return None


def require_kubevirt_schema() -> None:
    """Skip the calling test when the validator cannot run; in CI (CI set) fail instead, never skip silently."""
    problem = tooling_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"KubeVirt schema validator unavailable in CI: {problem}")
    pytest.skip(f"KubeVirt schema validator unavailable: {problem}")


@pytest.fixture(scope="session")
def kubevirt_schema() -> None:
    """Fixture form of require_kubevirt_schema() (skip locally / fail in CI when the tooling is missing)."""
    require_kubevirt_schema()


def check_virtual_machines(manifests: Sequence[Mapping[str, Any]]) -> list[tuple[list[str], list[str]]]:
    """Both checks of each manifest, in one run of the compiler: (field walk errors, compiler errors).

    The walk is complete; the compiler's own check of `const vm: V1VirtualMachine = <manifest>` is a second
    opinion (it reports only the first excess field of an object). validate_* report the walk's errors, or
    the compiler's when the walk found none.
    """
    problem = tooling_problem()
    if problem is not None:
        raise KubevirtSchemaUnavailable(problem)
    proc = subprocess.run(
        ["node", str(VALIDATOR), str(MODULES_DIR)],
        input=json.dumps(list(manifests)),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{VALIDATOR.name} exited {proc.returncode}: {proc.stderr.strip()}")

    def lines(errors: list[dict[str, str]]) -> list[str]:
        return [f"{e['path'] or '(manifest)'}: {e['message']}" for e in errors]

    return [(lines(r["walk"]), lines(r["compiler"])) for r in json.loads(proc.stdout)]


def validate_virtual_machines(manifests: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """validate_virtual_machine() for several manifests in one run (each run takes a second or two)."""
    return [walk or compiler for walk, compiler in check_virtual_machines(manifests)]


def validate_virtual_machine(manifest: Mapping[str, Any]) -> list[str]:
    """Errors of one kubevirt.io/v1 VirtualMachine manifest (a dict as loaded from YAML); [] when valid.

    Each error is "<field path>: <message>", e.g.
    'spec.template.spec.domain.cpu.thread: unknown field "thread" in V1CPU (did you mean "threads"?); ...'.
    Raises KubevirtSchemaUnavailable when Node.js or the types are missing (see require_kubevirt_schema()).
    """
    return validate_virtual_machines([manifest])[0]


def validate_virtual_machine_file(path: Path) -> list[str]:
    """validate_virtual_machine() for a YAML file holding exactly one manifest."""
    documents = [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]
    if len(documents) != 1:
        return [f"(file): {path} holds {len(documents)} YAML documents, expected one VirtualMachine"]
    if not isinstance(documents[0], dict):
        return [f"(file): {path} holds a {type(documents[0]).__name__}, expected a VirtualMachine mapping"]
    return validate_virtual_machine(documents[0])
