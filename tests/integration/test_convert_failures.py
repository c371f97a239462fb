"""convert_guest failures a user can hit: the error, its message, and nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.conversion import ConvertOptions, run_convert
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import (
    OutputError,
    PreflightError,
    SourceError,
    V2VError,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.inputs import SourceSpec
from tests.guests import phony
from tests.hashing import tree_hashes
from tests.playbook import run_tasks

pytestmark = pytest.mark.integration


def test_blank_disk_is_blocked_before_anything_is_written(tmp_path: Path) -> None:
    guest = phony.build("blank")
    before = tree_hashes(*guest.disks)
    out = tmp_path / "out"
    with pytest.raises(PreflightError) as err:
        run_convert(SourceSpec(input="disk", path=[str(d) for d in guest.disks], work_dir=str(tmp_path / "w")),
                    ConvertOptions(output="local", output_dir=str(out)))
    assert "no-os" in str(err.value) and "no operating system was found" in str(err.value)
    assert err.value.phase == "preflight"
    assert not out.exists(), "a blocked conversion created its output directory"
    assert tree_hashes(*guest.disks) == before
    status = tmp_path / "w" / f"kvmigrate-{guest.disks[0].stem}" / "status.json"
    assert '"state": "failed"' in status.read_text()
    assert not list((tmp_path / "w").glob("kvmigrate-open-*")), "overlays left behind"


def test_guest_without_kernel_is_blocked_through_ansible(tmp_path: Path) -> None:
    guest = phony.build("phony-rocky9")
    before = tree_hashes(*guest.disks)
    out = tmp_path / "out"
    out.mkdir()
    (out / "unrelated.txt").write_text("keep me")
    run = run_tasks([{"name": "convert", "kvmigrate.v2v.convert_guest": {
        "input": "disk", "path": [str(d) for d in guest.disks], "output": "local", "output_dir": str(out),
        "work_dir": str(tmp_path / "w")}, "register": "conv"}], tmp_path)
    conv = run.results["conv"]
    assert conv["failed"] and conv["phase"] == "preflight"
    assert "no-kernel" in conv["msg"] and "no installed kernel" in conv["msg"]
    assert sorted(p.name for p in out.iterdir()) == ["unrelated.txt"]
    assert tree_hashes(*guest.disks) == before


def test_refused_image_names_the_file(tmp_path: Path) -> None:
    import subprocess

    evil = tmp_path / "evil.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/passwd", str(evil), "1M"],
                   check=True)
    with pytest.raises(SourceError, match=r"evil\.qcow2.*backing file.*/etc/passwd"):
        run_convert(SourceSpec(input="disk", path=[str(evil)], work_dir=str(tmp_path / "w")),
                    ConvertOptions(output="local", output_dir=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_output_options_are_checked_first(tmp_path: Path) -> None:
    spec = SourceSpec(input="disk", path=[str(tmp_path / "x.img")])
    with pytest.raises(V2VError, match="needs output_dir"):
        run_convert(spec, ConvertOptions(output="local"))
    with pytest.raises(V2VError, match="unknown output 'vsphere'"):
        run_convert(spec, ConvertOptions(output="vsphere"))


def test_missing_pool_fails_before_the_appliance(libvirtd, tmp_path: Path) -> None:
    guest = phony.build("phony-debian12")
    with pytest.raises(V2VError, match="no-such-pool"):
        run_convert(SourceSpec(input="disk", path=[str(guest.disks[0])], work_dir=str(tmp_path / "w")),
                    ConvertOptions(output="libvirt",
                                   output_options={"output_uri": libvirtd.uri, "pool": "no-such-pool"}))
    assert not list((tmp_path / "w").glob("kvmigrate-open-*"))


def test_kubevirt_refusals_come_before_the_appliance_and_leave_nothing(tmp_path: Path) -> None:
    guest = phony.build("phony-debian12")
    before = tree_hashes(*guest.disks)
    spec = SourceSpec(input="disk", path=[str(guest.disks[0])], work_dir=str(tmp_path / "w"))
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="cannot name a KubeVirt VirtualMachine") as err:
        run_convert(spec, ConvertOptions(output="kubevirt", output_dir=str(out), name="Web_01"))
    assert "name: web-01" in (err.value.hint or "")
    with pytest.raises(OutputError, match="names 2 claims for 1 disks"):
        run_convert(spec, ConvertOptions(output="kubevirt", output_dir=str(out), name="web01",
                                         output_options={"kubevirt_pvcs": ["a", "b"]}))
    assert not out.exists(), "a refused conversion created its output directory"
    out.mkdir()
    (out / "web01.yaml").mkdir()
    with pytest.raises(OutputError, match=r"web01\.yaml is a directory"):
        run_convert(spec, ConvertOptions(output="kubevirt", output_dir=str(out), name="web01"))
    assert sorted(p.name for p in out.iterdir()) == ["web01.yaml"]
    assert not (tmp_path / "w").exists() or not list((tmp_path / "w").iterdir()), "work files left behind"
    assert tree_hashes(*guest.disks) == before


def test_output_that_would_overwrite_the_source_is_refused(tmp_path: Path) -> None:
    import shutil

    guest = phony.build("phony-debian12")
    src = tmp_path / "g-vda.raw"
    shutil.copyfile(guest.disks[0], src)
    before = tree_hashes(src)
    with pytest.raises(OutputError, match="would overwrite a source disk"):
        run_convert(SourceSpec(input="disk", path=[str(src)], format=guest.format, work_dir=str(tmp_path / "w")),
                    ConvertOptions(output="local", output_dir=str(tmp_path), name="g"))
    assert tree_hashes(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g-vda.raw"]
