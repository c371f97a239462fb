"""Pure parts of network sources: NBD URIs, ssh:// URLs, host key fingerprints, remote libvirt disk names."""

from __future__ import annotations

import base64
import json

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v import storage
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import NotSupportedError, SourceError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.libvirt import _remote_disk_uri
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.vmx_ssh import parse_ssh_url
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.libvirt.client import is_remote_uri
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.transport.ssh import SshCredentials, fingerprint

# ssh-keygen -t ed25519; 'ssh-keygen -lf' printed the fingerprint below.
PUBLIC_KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIAIwdj7QXbGdBHTqzx7t1uklIXsJTH0zomqbQTL9EBAF"
PUBLIC_KEY_FINGERPRINT = "SHA256:Jz/sVu9DOjnsxNpntDN/kOcsFBnfqfZFVrppZgALgxI"


@pytest.mark.parametrize(("uri", "expected"), [
    ("nbd://10.0.0.5:10810/sda", {"driver": "nbd", "server": {"type": "inet", "host": "10.0.0.5", "port": "10810"},
                                  "export": "sda"}),
    ("nbd://localhost", {"driver": "nbd", "server": {"type": "inet", "host": "localhost", "port": "10809"}}),
    ("nbd://[::1]:2000/a%20b", {"driver": "nbd", "server": {"type": "inet", "host": "::1", "port": "2000"},
                                "export": "a b"}),
    ("nbd+unix:///disk0?socket=/run/p2v/nbd.sock", {"driver": "nbd", "server": {"type": "unix",
                                                                                "path": "/run/p2v/nbd.sock"},
                                                    "export": "disk0"}),
    ("nbd+unix:///?socket=/tmp/s", {"driver": "nbd", "server": {"type": "unix", "path": "/tmp/s"}}),
])
def test_nbd_uris(uri: str, expected: dict) -> None:
    assert storage.is_network_uri(uri)
    assert storage.nbd_block_driver(uri) == expected


def test_bad_and_unsupported_uris() -> None:
    with pytest.raises(SourceError, match="no socket"):
        storage.nbd_block_driver("nbd+unix:///disk")
    with pytest.raises(SourceError, match="no host"):
        storage.nbd_block_driver("nbd:///disk")
    for uri in ("https://example.com/disk.img", "nbds://host/x", "ssh://root@esxi/x-flat.vmdk"):
        with pytest.raises(NotSupportedError, match="not supported yet"):
            storage.nbd_block_driver(uri)


def test_json_spec_names_the_format_and_never_opens_a_remote_backing_file() -> None:
    raw = json.loads(storage.image_json_spec("nbd://h/e", "raw")[len("json:"):])
    assert raw == {"driver": "raw", "file": {"driver": "nbd", "server": {"type": "inet", "host": "h", "port": "10809"},
                                             "export": "e"}}
    qcow2 = json.loads(storage.image_json_spec("nbd://h/e", "qcow2")[len("json:"):])
    assert qcow2["driver"] == "qcow2" and qcow2["backing"] is None
    info = storage.ImageInfo(path="nbd+unix:///?socket=/s", format="vhd", virtual_size=1)
    assert info.is_network and json.loads(info.qemu_filename()[len("json:"):])["driver"] == "vpc"
    assert storage.ImageInfo(path="/a/b.img", format="raw", virtual_size=1).qemu_filename() == "/a/b.img"


def test_ssh_urls() -> None:
    loc = parse_ssh_url("ssh://esxi.example/vmfs/volumes/datastore1/my%20vm/my%20vm.vmx")
    expected = ("root", "esxi.example", 22, "/vmfs/volumes/datastore1/my vm/my vm.vmx")
    assert (loc.user, loc.host, loc.port, loc.path) == expected
    assert loc.known_hosts_name == "esxi.example"
    assert loc.url == "ssh://root@esxi.example/vmfs/volumes/datastore1/my%20vm/my%20vm.vmx"
    other = parse_ssh_url("ssh://admin@10.1.1.1:2222/vmfs/volumes/ds/vm/vm.vmx")
    assert (other.user, other.port, other.known_hosts_name) == ("admin", 2222, "[10.1.1.1]:2222")
    assert other.with_path("/vmfs/volumes/ds/vm/vm-flat.vmdk").url == \
        "ssh://admin@10.1.1.1:2222/vmfs/volumes/ds/vm/vm-flat.vmdk"
    with pytest.raises(SourceError, match="contains a password"):
        parse_ssh_url("ssh://root:secret@esxi/vmfs/volumes/ds/vm/vm.vmx")
    with pytest.raises(SourceError, match="absolute path"):
        parse_ssh_url("ssh://root@esxi")
    with pytest.raises(SourceError, match="not an ssh:// URL"):
        parse_ssh_url("sftp://root@esxi/x.vmx")


def test_fingerprint_matches_ssh_keygen() -> None:
    paramiko = pytest.importorskip("paramiko")
    key = paramiko.Ed25519Key(data=base64.b64decode(PUBLIC_KEY))
    assert fingerprint(key) == PUBLIC_KEY_FINGERPRINT


def test_credentials_keep_secrets_out_of_repr() -> None:
    creds = SshCredentials(password="pw-123", private_key="-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n")
    assert "pw-123" not in repr(creds) and "abc" not in repr(creds)
    assert creds.key_is_text and not SshCredentials(private_key="/root/.ssh/id_ed25519").key_is_text


def test_remote_libvirt_disk_names() -> None:
    assert not is_remote_uri("qemu:///system") and not is_remote_uri("qemu:///system?socket=/run/x")
    assert is_remote_uri("xen+ssh://root@xen.example/") and is_remote_uri("qemu+tcp://kvm:16509/system")
    assert _remote_disk_uri("xen+ssh://root@xen.example/", "/var/lib/xen/images/a b.img") == \
        "xen+ssh://root@xen.example/var/lib/xen/images/a%20b.img"
    assert _remote_disk_uri("qemu+tcp://kvm:16509/system", "/dev/vg/lv") == "qemu+tcp://kvm:16509/dev/vg/lv"
