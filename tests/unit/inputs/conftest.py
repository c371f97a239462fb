"""Fixtures for the source input tests: sample data and tiny OVA builders."""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "data"
CONFORMANCE = DATA / "conformance" / "virt-v2v"

OvaBuilder = Callable[..., Path]


def manifest_text(files: dict[str, bytes], algorithm: str = "SHA256") -> str:
    lines = [f"{algorithm}({name})= {hashlib.new(algorithm.lower(), data).hexdigest()}"
             for name, data in files.items()]
    return "\n".join(lines) + "\n"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def build_ova(tmp_path: Path) -> OvaBuilder:
    """Write an OVA (tar, optionally compressed) from ``{name: bytes}``.

    ``manifest`` adds ``<stem>.mf`` over every file (``"SHA256"``/``"SHA1"``)
    or is the manifest text itself; ``symlinks``/``hardlinks`` add link
    members ``{name: target}``.
    """

    def build(files: dict[str, bytes], *, name: str = "test.ova", compression: str = "",
              manifest: str | None = "SHA256", symlinks: dict[str, str] | None = None,
              hardlinks: dict[str, str] | None = None) -> Path:
        path = tmp_path / name
        members = dict(files)
        if manifest in ("SHA256", "SHA1"):
            ovf = next((n for n in files if n.endswith(".ovf")), "test.ovf")
            base = posixpath.dirname(ovf)
            listed = {posixpath.relpath(n, base or "."): d for n, d in files.items()}
            members[ovf[:-4] + ".mf"] = manifest_text(listed, manifest).encode()
        elif manifest is not None:
            members["test.mf"] = manifest.encode()
        with tarfile.open(path, f"w:{compression}", format=tarfile.GNU_FORMAT) as tar:
            for member, data in members.items():
                _add(tar, member, data)
            for link, target in (symlinks or {}).items():
                info = tarfile.TarInfo(link)
                info.type, info.linkname = tarfile.SYMTYPE, target
                tar.addfile(info)
            for link, target in (hardlinks or {}).items():
                info = tarfile.TarInfo(link)
                info.type, info.linkname = tarfile.LNKTYPE, target
                tar.addfile(info)
        return path

    return build
