"""transport/ssh.py without a network: the one host-key policy, key loading, credentials."""

from __future__ import annotations

import io
import re
from pathlib import Path

import paramiko
import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import SourceError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.transport.ssh import (
    HostKeyError,
    SSHAuthError,
    SshCredentials,
    SshLocation,
    SshTarget,
    connect,
    fingerprint,
    load_private_key,
    verify_host_key,
)

pytestmark = pytest.mark.unit

KEY = paramiko.ECDSAKey.generate()
OTHER = paramiko.RSAKey.generate(1024)


def _target(**values: object) -> SshTarget:
    return SshTarget(**{"host": "esxi.example", **values})  # type: ignore[arg-type]


def test_a_pinned_fingerprint_is_accepted() -> None:
    pinned = fingerprint(KEY)
    assert verify_host_key(_target(host_key_fingerprint=[pinned]), KEY) == pinned
    # as ssh-keygen prints it, with base64 padding, among others
    assert verify_host_key(_target(host_key_fingerprint=[fingerprint(OTHER), pinned + "="]), KEY) == pinned


def test_a_mismatch_is_refused_with_the_presented_fingerprint() -> None:
    target = _target(host_key_fingerprint=[fingerprint(OTHER)], option_prefix="source.")
    with pytest.raises(HostKeyError, match="does NOT match the pinned fingerprint") as caught:
        verify_host_key(target, KEY)
    message = str(caught.value)
    assert f"ecdsa-sha2-nistp256 {fingerprint(KEY)}" in message and "source.host_key_fingerprint" in message
    assert isinstance(caught.value, SourceError)


def test_an_unknown_key_is_refused_never_accepted() -> None:
    with pytest.raises(HostKeyError, match="is unknown") as caught:
        verify_host_key(_target(port=2222, server_name="the conversion server"), KEY)
    message = str(caught.value)
    assert "esxi.example:2222" in message and f"host_key_fingerprint: {fingerprint(KEY)}" in message
    assert "ssh_host_ecdsa_key.pub" in message


def test_known_hosts(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"[esxi.example]:2222 {KEY.get_name()} {KEY.get_base64()}\n"
                     f"other.example {OTHER.get_name()} {OTHER.get_base64()}\n")
    before = known.read_text()
    assert verify_host_key(_target(port=2222, known_hosts=str(known)), KEY) == fingerprint(KEY)
    with pytest.raises(HostKeyError, match=f"does NOT match known_hosts {re.escape(str(known))}"):
        verify_host_key(_target(host="other.example", known_hosts=str(known)), KEY)
    with pytest.raises(HostKeyError, match="is unknown"):  # port 22 is another name in known_hosts
        verify_host_key(_target(known_hosts=str(known)), KEY)
    # either trust anchor is enough: a pin, or the known_hosts entry
    both = _target(port=2222, known_hosts=str(known), host_key_fingerprint=[fingerprint(OTHER)])
    assert verify_host_key(both, KEY) == fingerprint(KEY)
    assert known.read_text() == before, "known_hosts is only read"
    with pytest.raises(HostKeyError, match="cannot read the known_hosts file"):
        verify_host_key(_target(known_hosts=str(tmp_path / "missing")), KEY)


def test_hashed_known_hosts_entries(tmp_path: Path) -> None:
    hashed = paramiko.HostKeys.hash_host("esxi.example")
    known = tmp_path / "known_hosts"
    known.write_text(f"{hashed} {KEY.get_name()} {KEY.get_base64()}\n")
    assert verify_host_key(_target(known_hosts=str(known)), KEY) == fingerprint(KEY)


def test_a_pin_must_be_a_sha256_fingerprint() -> None:
    with pytest.raises(HostKeyError, match=r"source\.host_key_fingerprint 'MD5:aa' is not a SHA256"):
        verify_host_key(_target(host_key_fingerprint=["MD5:aa"], option_prefix="source."), KEY)


def test_private_keys(tmp_path: Path) -> None:
    text = io.StringIO()
    KEY.write_private_key(text)
    key_file = tmp_path / "id"
    key_file.write_text(text.getvalue())
    for given in (text.getvalue(), str(key_file)):
        loaded = load_private_key(_target(credentials=SshCredentials(private_key=given)))
        assert loaded.get_base64() == KEY.get_base64()
    encrypted = io.StringIO()
    OTHER.write_private_key(encrypted, password="pass-phrase")
    with pytest.raises(SSHAuthError, match="encrypted and no passphrase") as caught:
        load_private_key(_target(credentials=SshCredentials(private_key=encrypted.getvalue()),
                                 passphrase_option="private_key_passphrase"))
    assert "Set private_key_passphrase" in str(caught.value)
    loaded = load_private_key(_target(credentials=SshCredentials(private_key=encrypted.getvalue(),
                                                                 private_key_passphrase="pass-phrase")))
    assert loaded.get_base64() == OTHER.get_base64()
    with pytest.raises(SSHAuthError, match=r"source\.private_key is neither key text nor an existing key file"):
        load_private_key(_target(credentials=SshCredentials(private_key="/no/such/key"), option_prefix="source."))
    garbage = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----\n"
    with pytest.raises(SSHAuthError, match="could not be read"):
        load_private_key(_target(credentials=SshCredentials(private_key=garbage)))


def test_no_credentials_fail_before_connecting() -> None:
    with pytest.raises(SSHAuthError, match="no SSH credentials") as caught:
        connect(_target(host="192.0.2.1", option_prefix="source."))
    assert "source.password or source.private_key" in str(caught.value)


def test_secrets_stay_out_of_repr() -> None:
    target = _target(credentials=SshCredentials(password="pw-1", private_key="k-2", private_key_passphrase="p-3"))
    assert not any(secret in repr(target) for secret in ("pw-1", "k-2", "p-3"))


def test_locations() -> None:
    location = SshLocation(user="root", host="fe80::1", port=2222, path="/vmfs/volumes/ds 1/vm.vmx")
    assert location.url == "ssh://root@[fe80::1]:2222/vmfs/volumes/ds%201/vm.vmx"
    assert location.known_hosts_name == "[fe80::1]:2222"
    assert _target(user="admin").location("/a").url == "ssh://admin@esxi.example/a"
