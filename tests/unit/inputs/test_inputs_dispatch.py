"""SourceSpec, the input registry and open_source(): dispatch by kind, the opened source's contract."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v import inputs
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import SourceError
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import (
    INPUT_KINDS,
    DiskEndpoint,
    Input,
    OpenedSource,
    SourceSpec,
    input_for,
    open_source,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.ova import OvaInput
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs.vmx import VmxInput, is_ssh
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import Source, SourceDisk

pytestmark = pytest.mark.unit

PACKAGE = "ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs"
REPO = Path(__file__).resolve().parents[3]


def test_every_input_kind_has_its_file() -> None:
    for module in (*INPUT_KINDS, "vmx_ssh"):
        assert importlib.util.find_spec(f"{PACKAGE}.{module}") is not None, module


def test_input_kinds_come_from_the_registry_and_are_spelled_once() -> None:
    assert INPUT_KINDS == ("disk", "ova", "vmx", "libvirtxml", "libvirt", "p2v")
    for kind in INPUT_KINDS:
        assert isinstance(input_for(kind), Input), kind
    # The module option's choices are the registry's kinds; the engine lists them nowhere else.
    engine = REPO / "plugins" / "module_utils" / "v2v"
    spelled = [str(p.relative_to(engine)) for p in engine.rglob("*.py")
               if '"disk", "ova", "vmx"' in p.read_text(encoding="utf-8")]
    assert spelled == [], spelled


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(SourceError, match="unknown source input 'vhd'") as caught:
        input_for("vhd")
    assert ", ".join(INPUT_KINDS) in str(caught.value)
    with pytest.raises(SourceError, match="unknown source input 'vhd'"):
        open_source(SourceSpec(input="vhd"))


def test_spec_paths_and_from_params() -> None:
    assert SourceSpec(input="disk").paths == []
    assert SourceSpec(input="disk", path="/a").paths == ["/a"]
    assert SourceSpec(input="disk", path=["/a", "/b"]).paths == ["/a", "/b"]
    spec = SourceSpec.from_params({"input": "ova", "path": "/x.ova", "password": None, "unknown": 1,
                                   "work_dir": "/w", "luks_keys": ["k"], "root": "first"})
    assert (spec.input, spec.path, spec.work_dir, spec.password) == ("ova", "/x.ova", "/w", None)
    assert not hasattr(spec, "luks_keys") and not hasattr(spec, "root")  # inspection options, not the source's
    assert "secret" not in repr(SourceSpec(input="disk", password="secret", private_key="secret"))
    assert SourceSpec(input="vmx", host_key_fingerprint="SHA256:x").host_key_fingerprint == ["SHA256:x"]
    with pytest.raises(SourceError, match="no 'input'"):
        SourceSpec.from_params({"path": "/x"})
    with pytest.raises(SourceError, match="exactly one path"):
        SourceSpec(input="vmx", path=["/a", "/b"]).single_path()


def test_vmx_over_ssh_is_the_vmx_input() -> None:
    assert isinstance(input_for("vmx"), VmxInput)
    assert is_ssh(SourceSpec(input="vmx", path="ssh://root@esxi/vmfs/volumes/ds/vm/vm.vmx"))
    assert is_ssh(SourceSpec(input="vmx", uri="ssh://root@esxi/vmfs/volumes/ds/vm/vm.vmx"))
    assert not is_ssh(SourceSpec(input="vmx", path="/vm/vm.vmx"))


def test_dispatch_to_implemented_inputs(data_dir: Path, tmp_path: Path) -> None:
    vmx = tmp_path / "vm.vmx"
    vmx.write_text('displayName = "vm"\nscsi0:0.fileName = "vm.vmdk"\n')
    (tmp_path / "vm.vmdk").write_bytes(b"")
    assert open_source(SourceSpec(input="vmx", path=str(vmx))).source.input == "vmx"
    xml = tmp_path / "vm.xml"
    xml.write_text("<domain type='kvm'><name>vm</name></domain>")
    assert open_source(SourceSpec(input="libvirtxml", path=str(xml))).source.input == "libvirtxml"
    folder = tmp_path / "ovf"
    folder.mkdir()
    sample = data_dir / "ovf" / "virtualbox6-ovf20-alpine.ovf"
    (folder / sample.name).write_bytes(sample.read_bytes())
    (folder / "alpine-disk001.vmdk").write_bytes(b"")
    with open_source(SourceSpec(input="ova", path=str(folder))) as opened:
        assert opened.source.input == "ova"
        # OVF snapshot chains: the OVA input lets the probe follow parents in the disk's own directory.
        assert [e.parents_in_dir for e in opened.endpoints] == [True]
    assert isinstance(input_for("ova"), OvaInput)


def _source(*paths: str) -> Source:
    return Source(name="vm", hypervisor="kvm", input="disk",
                  disks=[SourceDisk(path=p, format="raw", offset=512 if p.endswith(".ova") else None) for p in paths])


def test_endpoints_default_to_where_the_source_says() -> None:
    with OpenedSource(_source("/d/a.img", "/d/b.ova")) as opened:
        assert opened.endpoints == [DiskEndpoint(path="/d/a.img", format="raw"),
                                    DiskEndpoint(path="/d/b.ova", format="raw", offset=512)]
        assert opened.identity() == []
        with opened.run_context(check_mode=False) as report:
            assert report.result is None


class _Server:
    def __init__(self, events: list[str], name: str) -> None:
        self.events = events
        self.name = name

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        self.events.append(f"start {self.name}")
        try:
            yield f"nbd+unix:///?socket=/run/{self.name}.sock"
        except SourceError as exc:
            exc.message = f"served by {self.name}: {exc.message}"
            raise
        finally:
            self.events.append(f"stop {self.name}")


def test_disk_servers_start_on_first_use_and_stop_with_the_source() -> None:
    events: list[str] = []
    opened = OpenedSource(_source("ssh://h/a", "/local/b"), servers={0: _Server(events, "a")})
    with pytest.raises(RuntimeError, match="inside 'with open_source"):
        list(opened.endpoints)
    with opened:
        assert events == []  # metadata only: nothing started
        endpoints = opened.endpoints
        assert endpoints[0].path == "nbd+unix:///?socket=/run/a.sock" and endpoints[1].path == "/local/b"
        assert opened.endpoints is endpoints and events == ["start a"]
    assert events == ["start a", "stop a"]
    # A failure while the disks are read passes through their server, which adds its side of the story.
    with pytest.raises(SourceError, match="served by a: cannot read"), opened:
        list(opened.endpoints)
        raise SourceError("cannot read")
    assert events[-1] == "stop a"


def test_an_input_is_one_class_and_one_registry_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    class Fake(Input):
        def load(self, spec: SourceSpec) -> Source:
            return _source(*spec.paths)

    monkeypatch.setitem(inputs._INPUTS, "fake", Fake)
    with open_source(SourceSpec(input="fake", path=["/x.img"])) as opened:
        assert [d.path for d in opened.endpoints] == ["/x.img"]
