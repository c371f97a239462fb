# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-ins for standard-library features newer than the conversion host's Python.

The modules run on the host's own Python (3.9 on RHEL 9). Each helper here
behaves like the newer feature it replaces; drop it once the floor reaches
that feature's version.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar, overload

_A = TypeVar("_A")
_B = TypeVar("_B")
_C = TypeVar("_C")


@overload
def strict_zip(first: Iterable[_A], second: Iterable[_B], /) -> Iterator[tuple[_A, _B]]: ...


@overload
def strict_zip(first: Iterable[_A], second: Iterable[_B], third: Iterable[_C], /) -> Iterator[tuple[_A, _B, _C]]: ...


def strict_zip(*iterables: Iterable[Any]) -> Iterator[tuple[Any, ...]]:
    """``zip(*iterables, strict=True)`` (Python 3.10+): ValueError when the lengths differ.

    Lazy like ``zip``: the error comes when the shorter argument runs out.
    """
    missing = object()
    for values in itertools.zip_longest(*iterables, fillvalue=missing):
        short = [n for n, v in enumerate(values, 1) if v is missing]
        if short:
            raise ValueError(f"strict_zip(): argument {short[0]} of {len(values)} is shorter than the others")
        yield values
