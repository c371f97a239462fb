"""Shared helpers for the benchmarks."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.monotonic()
    value = action()
    return time.monotonic() - start, value


def alternate(reference: Callable[[], Any], ours: Callable[[], Any], rounds: int) -> tuple[list[float], list[float]]:
    """Time both sides ``rounds`` times, interleaved, so load on the machine hits both alike."""
    ref, our = [], []
    for _round in range(rounds):
        ref.append(timed(reference)[0])
        our.append(timed(ours)[0])
    return ref, our


def report(name: str, data: dict[str, Any]) -> None:
    """Print a benchmark's numbers and keep them as JSON under benchmarks/results/."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=1))
    print(f"== {name}")
    for key, value in data.items():
        print(f"  {key:28} {value}")


def libguestfs_env() -> dict[str, str]:
    from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.appliance import libguestfs_env as env

    return dict(env(), **{k: v for k, v in os.environ.items() if k.startswith("LIBGUESTFS_DEBUG")})
