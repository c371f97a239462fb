"""SourceSpec and load_source(): dispatch by kind, honest 'not supported yet'."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import SourceError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import (
    INPUT_KINDS,
    SourceSpec,
    input_module_name,
    load_source,
)

pytestmark = pytest.mark.unit

PACKAGE = "ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs"


def test_every_input_kind_has_its_file() -> None:
    for module in ("disk", "ova", "vmx", "vmx_ssh", "libvirtxml", "libvirt", "p2v"):
        assert importlib.util.find_spec(f"{PACKAGE}.{module}") is not None, module


def test_spec_paths_and_from_params() -> None:
    assert SourceSpec(input="disk").paths == []
    assert SourceSpec(input="disk", path="/a").paths == ["/a"]
    assert SourceSpec(input="disk", path=["/a", "/b"]).paths == ["/a", "/b"]
    spec = SourceSpec.from_params({"input": "ova", "path": "/x.ova", "password": None, "unknown": 1,
                                   "work_dir": "/w", "luks_keys": ["k"]})
    assert (spec.input, spec.path, spec.work_dir, spec.password, spec.luks_keys) == ("ova", "/x.ova", "/w", None, ["k"])
    assert "luks-secret" not in repr(SourceSpec(input="disk", luks_keys=["luks-secret"]))
    assert "secret" not in repr(SourceSpec(input="disk", password="secret"))
    with pytest.raises(SourceError, match="no 'input'"):
        SourceSpec.from_params({"path": "/x"})
    with pytest.raises(SourceError, match="exactly one path"):
        SourceSpec(input="vmx", path=["/a", "/b"]).single_path()


def test_module_names() -> None:
    assert [input_module_name(SourceSpec(input=k)) for k in INPUT_KINDS] == list(INPUT_KINDS)
    assert input_module_name(SourceSpec(input="vmx", path="ssh://root@esxi/vmfs/volumes/ds/vm/vm.vmx")) == "vmx_ssh"
    assert input_module_name(SourceSpec(input="vmx", uri="ssh://root@esxi/vmfs/volumes/ds/vm/vm.vmx")) == "vmx_ssh"
    with pytest.raises(SourceError, match="unknown source input 'vhd'"):
        input_module_name(SourceSpec(input="vhd"))


def test_dispatch_to_implemented_inputs(data_dir: Path, tmp_path: Path) -> None:
    vmx = tmp_path / "vm.vmx"
    vmx.write_text('displayName = "vm"\nscsi0:0.fileName = "vm.vmdk"\n')
    (tmp_path / "vm.vmdk").write_bytes(b"")
    assert load_source(SourceSpec(input="vmx", path=str(vmx))).input == "vmx"
    xml = tmp_path / "vm.xml"
    xml.write_text("<domain type='kvm'><name>vm</name></domain>")
    assert load_source(SourceSpec(input="libvirtxml", path=str(xml))).input == "libvirtxml"
    folder = tmp_path / "ovf"
    folder.mkdir()
    sample = data_dir / "ovf" / "virtualbox6-ovf20-alpine.ovf"
    (folder / sample.name).write_bytes(sample.read_bytes())
    (folder / "alpine-disk001.vmdk").write_bytes(b"")
    assert load_source(SourceSpec(input="ova", path=str(folder))).input == "ova"
