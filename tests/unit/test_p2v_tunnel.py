"""Host key verification and the module's option mapping, without a network."""

from __future__ import annotations

import json
from pathlib import Path

import paramiko
import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.p2v.session import (
    PrepareOptions,
    options_from_params,
    prepare,
    session_fingerprint,
    teardown,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.transport.ssh import (
    HostKeyError,
    SshTarget,
    normalize_fingerprint,
    verify_host_key,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.transport.ssh import fingerprint as key_fingerprint

pytestmark = pytest.mark.unit

KEY = paramiko.RSAKey.generate(1024)
OTHER = paramiko.RSAKey.generate(1024)


def test_fingerprint_is_openssh_sha256() -> None:
    fingerprint = key_fingerprint(KEY)
    assert fingerprint.startswith("SHA256:") and not fingerprint.endswith("=") and len(fingerprint) == 50
    assert normalize_fingerprint(fingerprint + "=") == fingerprint
    with pytest.raises(HostKeyError, match="not a SHA256"):
        normalize_fingerprint("MD5:aa:bb")


def test_pinned_fingerprint() -> None:
    target = SshTarget(host="conv1", host_key_fingerprint=[key_fingerprint(KEY)])
    assert verify_host_key(target, KEY) == key_fingerprint(KEY)
    with pytest.raises(HostKeyError, match="does NOT match the pinned") as caught:
        verify_host_key(target, OTHER)
    assert key_fingerprint(OTHER) in str(caught.value)


def test_known_hosts(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"[conv1]:2222 ssh-rsa {KEY.get_base64()}\n")
    assert verify_host_key(SshTarget(host="conv1", port=2222, known_hosts=str(known)), KEY)
    with pytest.raises(HostKeyError, match="does NOT match"):
        verify_host_key(SshTarget(host="conv1", port=2222, known_hosts=str(known)), OTHER)
    with pytest.raises(HostKeyError, match="is unknown") as caught:
        verify_host_key(SshTarget(host="conv1", port=22, known_hosts=str(known)), KEY)
    assert f"host_key_fingerprint: {key_fingerprint(KEY)}" in str(caught.value)
    with pytest.raises(HostKeyError, match="is unknown"):
        verify_host_key(SshTarget(host="conv1"), KEY)


def test_options_from_params_and_fingerprint_without_secrets() -> None:
    options = options_from_params({"server": "c", "password": "pw", "networks": {"em1": "prod"}, "disks": ["sda"],
                                   "state": "present", "nbd_server": "auto"})
    assert options.settings.network_map == {"em1": "prod"} and options.settings.password == "pw"
    other = options_from_params({"server": "c", "password": "different", "networks": {"em1": "prod"},
                                 "disks": ["sda"]})
    assert session_fingerprint(options.settings, options) == session_fingerprint(other.settings, other)


def test_absent_without_a_session_and_with_a_dead_one(tmp_path: Path) -> None:
    options = PrepareOptions(state="absent", state_dir=str(tmp_path))
    assert prepare(options) == {"changed": False, "handle": str(tmp_path / "session.json"), "state": "absent"}
    state = tmp_path / "session.json"
    state.write_text(json.dumps({"state": "disconnected", "supervisor_pid": 999999999, "nbd_pids": [999999998]}))
    assert teardown(str(state), json.loads(state.read_text()), check_mode=True)["changed"] is True
    assert state.exists()
    assert prepare(options)["changed"] is True and not state.exists()
