"""plugins/ loads on every Python the modules support (3.9+; scripts/unit-pythons.sh runs this under 3.9 and 3.12).

Importing each engine module catches what only runs at import time (a
``X | Y`` alias, a newer library name at module level) even in modules that no
other unit test imports; compiling each Ansible module catches newer syntax.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.compat import strict_zip

pytestmark = pytest.mark.unit

_REPO = Path(__file__).resolve().parents[2]
_PACKAGE = "ansible_collections.kvmigrate.v2v"


def _module_name(path: Path) -> str:
    parts = path.relative_to(_REPO).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((_PACKAGE, *parts))


_ENGINE = sorted((_REPO / "plugins" / "module_utils").rglob("*.py"))
_MODULES = sorted((_REPO / "plugins" / "modules").glob("*.py"))


def test_the_floor_is_declared() -> None:
    assert sys.version_info >= (3, 9), "the modules support Python 3.9 and later; these tests too"
    assert _ENGINE and _MODULES


@pytest.mark.parametrize("path", _ENGINE, ids=lambda p: str(p.relative_to(_REPO / "plugins")))
def test_engine_module_imports(path: Path) -> None:
    importlib.import_module(_module_name(path))


@pytest.mark.parametrize("path", _MODULES, ids=lambda p: p.name)
def test_ansible_module_compiles(path: Path) -> None:
    compile(path.read_bytes(), str(path), "exec", dont_inherit=True)


def test_strict_zip_is_zip_strict() -> None:
    assert list(strict_zip([1, 2], "ab")) == [(1, "a"), (2, "b")]
    assert list(strict_zip([], [], [])) == []
    for shorter in (([1, 2], [1]), ([1], [1, 2]), ([1, 2], [1, 2], [3])):
        pairs = strict_zip(*shorter)
        assert next(pairs)  # lazy: the first items come before the error
        with pytest.raises(ValueError, match="is shorter than the others"):
            list(pairs)
