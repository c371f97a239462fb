"""Hashes of source files, to prove a test never wrote them."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_hashes(*paths: Path | str) -> dict[str, str]:
    """sha256 of every file given, and of every file under each directory given."""
    hashes = {}
    for top in map(Path, paths):
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in files:
            hashes[str(path)] = sha256(path)
    return hashes
