"""A real rpm database (sqlite backend, rpm >= 4.16) with a few package headers.

Phony RPM guests need a package database that librpm (and so libguestfs'
``inspect_list_applications2``) can read: librpm refuses an empty one, and the
build host has no ``rpm``. This writes the header blobs rpm itself stores: an
index of (tag, type, offset, count) entries plus a data store, all wrapped in
an immutable region (``RPMTAG_HEADERIMMUTABLE``), in the ``Packages`` table,
with the ``Name`` index rpm keeps next to it.
"""

from __future__ import annotations

import sqlite3
import struct
from dataclasses import dataclass
from pathlib import Path

# Tags and types from rpm's rpmtag.h.
_TAG_HEADERIMMUTABLE = 63
_TAG_HEADERI18NTABLE = 100
_TAGS = {"name": 1000, "version": 1001, "release": 1002, "epoch": 1003, "summary": 1004, "description": 1005,
         "installtime": 1008, "size": 1009, "vendor": 1011, "license": 1014, "url": 1020, "os": 1021,
         "arch": 1022, "sourcerpm": 1044}
_INT32, _STRING, _BIN, _STRING_ARRAY, _I18NSTRING = 4, 6, 7, 8, 9
_ENTRY = struct.Struct(">iIiI")  # tag, type, offset, count

# Index tables rpm creates next to Packages (lib/backend/sqlite.c, rpm 4.18).
_INDEXES = ("Name", "Basenames", "Group", "Requirename", "Providename", "Conflictname", "Obsoletename",
            "Triggername", "Dirnames", "Installtid", "Sigmd5", "Sha1header", "Filetriggername",
            "Transfiletriggername", "Recommendname", "Suggestname", "Supplementname", "Enhancename")
_BLOB_KEYS = ("Installtid", "Sigmd5")


@dataclass(frozen=True)
class RpmPackage:
    name: str
    version: str
    release: str
    summary: str
    epoch: int | None = None
    arch: str = "x86_64"
    vendor: str = "Rocky Enterprise Software Foundation"
    license: str = "GPLv2+"
    url: str = "https://example.org/"


def _header_blob(pkg: RpmPackage, installtime: int) -> bytes:
    entries: list[tuple[int, int, bytes, int]] = [(_TAG_HEADERI18NTABLE, _STRING_ARRAY, b"C\0", 1)]

    def string(tag: str, value: str, kind: int = _STRING) -> None:
        entries.append((_TAGS[tag], kind, value.encode("utf-8") + b"\0", 1))

    def int32(tag: str, value: int) -> None:
        entries.append((_TAGS[tag], _INT32, struct.pack(">I", value), 1))

    string("name", pkg.name)
    string("version", pkg.version)
    string("release", pkg.release)
    if pkg.epoch is not None:
        int32("epoch", pkg.epoch)
    string("summary", pkg.summary, _I18NSTRING)
    string("description", pkg.summary + ".", _I18NSTRING)
    int32("installtime", installtime)
    int32("size", 1024 * 1024)
    string("vendor", pkg.vendor)
    string("license", pkg.license)
    string("url", pkg.url)
    string("os", "linux")
    string("arch", pkg.arch)
    string("sourcerpm", f"{pkg.name}-{pkg.version}-{pkg.release}.src.rpm")
    entries.sort(key=lambda e: e[0])

    data = bytearray()
    index = []
    for tag, kind, payload, count in entries:
        if kind == _INT32:
            data.extend(b"\0" * (-len(data) % 4))
        index.append(_ENTRY.pack(tag, kind, len(data), count))
        data.extend(payload)
    # The region trailer closes the data: it points back over every index entry.
    il = len(entries) + 1
    trailer_offset = len(data)
    data.extend(_ENTRY.pack(_TAG_HEADERIMMUTABLE, _BIN, -il * _ENTRY.size, 16))
    region = _ENTRY.pack(_TAG_HEADERIMMUTABLE, _BIN, trailer_offset, 16)
    return struct.pack(">II", il, len(data)) + region + b"".join(index) + bytes(data)


def write_rpmdb(path: Path, packages: list[RpmPackage], installtime: int = 1_700_000_000) -> None:
    """Create ``path`` (an ``rpmdb.sqlite``) holding ``packages``."""
    con = sqlite3.connect(path)
    try:
        con.execute("CREATE TABLE 'Packages' (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
        for table in _INDEXES:
            keytype = "BLOB" if table in _BLOB_KEYS else "TEXT"
            con.execute(f"CREATE TABLE '{table}' (key '{keytype}' NOT NULL, hnum INTEGER NOT NULL, "
                        "idx INTEGER NOT NULL, FOREIGN KEY (hnum) REFERENCES 'Packages'(hnum))")
            con.execute(f"CREATE INDEX '{table}_key_idx' ON '{table}'(key)")
        for pkg in packages:
            cur = con.execute("INSERT INTO 'Packages' (blob) VALUES (?)", (_header_blob(pkg, installtime),))
            con.execute("INSERT INTO 'Name' (key, hnum, idx) VALUES (?, ?, 0)", (pkg.name, cur.lastrowid))
        con.commit()
    finally:
        con.close()
