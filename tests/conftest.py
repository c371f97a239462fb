"""Shared pytest setup: markers by directory, and 'no tests ran' is a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.guests.pytest_plugin", "tests.libvirt_fixtures"]

_TESTS = Path(__file__).parent
_MARKER_BY_DIR = {"unit": "unit", "integration": "integration", "e2e": "e2e"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        rel = Path(str(item.fspath)).resolve().relative_to(_TESTS.resolve())
        marker = _MARKER_BY_DIR.get(rel.parts[0])
        # get_closest_marker, not keywords: the directory's own name ("unit") is one of the keywords.
        if marker and item.get_closest_marker(marker) is None:
            item.add_marker(getattr(pytest.mark, marker))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # pytest exits 5 when nothing ran; keep that a failure even with -m filters
    # that deselect everything, so a broken selection never passes silently.
    if session.testscollected == 0 and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
