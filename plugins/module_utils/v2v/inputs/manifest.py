# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""OVF manifests (``.mf``): parse them and check every file they list.

A manifest line is ``ALGO(file)= hexdigest`` with ALGO one of SHA1,
SHA256, SHA512 (MD5 is accepted for old exports). Names are relative to
the manifest's directory. Every entry is verified; a mismatch or a listed
file that is not there is an error.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import IO, Protocol

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import SourceError, UnsafeImageError

_LINE_RE = re.compile(r"^\s*([A-Za-z0-9-]+)\s*\((.+)\)\s*=\s*([0-9A-Fa-f]+)\s*$")
_ALGORITHMS = {"sha1": "sha1", "sha256": "sha256", "sha512": "sha512", "md5": "md5",
               "sha-1": "sha1", "sha-256": "sha256", "sha-512": "sha512"}
_CHUNK = 1024 * 1024


class Opener(Protocol):
    """Opens a file the manifest names (relative name) for reading; None if there is no such file."""

    def __call__(self, name: str, /) -> IO[bytes] | None: ...


@dataclass
class ManifestEntry:
    algorithm: str
    filename: str
    digest: str


def parse_manifest(text: str, *, name: str = "manifest") -> list[ManifestEntry]:
    """Parse manifest text; SourceError naming the line for anything unexpected."""
    entries: list[ManifestEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        match = _LINE_RE.match(raw)
        if not match:
            raise SourceError(f"manifest {name}, line {number}: expected 'SHA256(file)= digest', got {raw.strip()!r}")
        algorithm = _ALGORITHMS.get(match.group(1).lower())
        if algorithm is None:
            raise SourceError(f"manifest {name}, line {number}: unsupported checksum algorithm {match.group(1)!r}")
        filename = match.group(2).strip()
        check_relative_name(filename, what=f"manifest {name} entry")
        entries.append(ManifestEntry(algorithm, filename, match.group(3).lower()))
    return entries


def check_relative_name(name: str, *, what: str) -> str:
    """Refuse a file reference that could point outside its package."""
    if not name or name.startswith(("/", "\\")) or "://" in name or re.match(r"^[A-Za-z]:", name):
        raise UnsafeImageError(f"{what} {name!r} is not a relative path inside the package",
                               hint="The OVF/OVA may be malicious; only files inside it are read")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise UnsafeImageError(f"{what} {name!r} points outside the package (contains '..')",
                               hint="The OVF/OVA may be malicious; only files inside it are read")
    return name


def file_digest(handle: IO[bytes], algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    while True:
        chunk = handle.read(_CHUNK)
        if not chunk:
            return hasher.hexdigest()
        hasher.update(chunk)


def verify_manifest(text: str, opener: Opener, *, name: str = "manifest") -> list[str]:
    """Check every entry of the manifest ``text``; return the names verified.

    ``opener(filename)`` opens a listed file or returns ``None`` if missing.
    """
    verified: list[str] = []
    for entry in parse_manifest(text, name=name):
        handle = opener(entry.filename)
        if handle is None:
            raise SourceError(f"manifest {name} lists {entry.filename!r}, which is not in the package",
                              hint="The OVA/OVF is incomplete; export or download it again")
        with handle:
            actual = file_digest(handle, entry.algorithm)
        if actual != entry.digest:
            raise SourceError(
                f"checksum mismatch for {entry.filename!r}: manifest {name} says "
                f"{entry.algorithm.upper()} {entry.digest}, the file has {actual}",
                hint="The file is corrupt or was modified; export or download the OVA again")
        verified.append(entry.filename)
    return verified
