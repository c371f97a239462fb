"""The real KVM probe on this host (no forcing): it answers quickly and explains itself."""

from __future__ import annotations

import time

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v import appliance

pytestmark = pytest.mark.integration


def test_probe_answers_within_its_timeout_and_explains(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("KVMIGRATE_ACCEL", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(appliance, "_decision", None)
    start = time.monotonic()
    decision = appliance.decide_accelerator(refresh=True)
    assert time.monotonic() - start < appliance.PROBE_TIMEOUT + 10
    assert decision.probed and decision.reason
    if decision.accel == "tcg":
        assert decision.warning and "TCG" in decision.warning and "KVMIGRATE_ACCEL" in decision.warning
    # the second call in a new process reads the per-boot cache instead of probing again
    monkeypatch.setattr(appliance, "_decision", None)
    again = appliance.decide_accelerator()
    assert (again.accel, again.probed) == (decision.accel, False)
