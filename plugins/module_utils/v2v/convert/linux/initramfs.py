# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read an initramfs on the conversion host: which files it holds, and the content of a few.

An initramfs is one or more cpio archives in the "newc" format, one after the
other: usually an uncompressed one with CPU microcode first, then the main one
compressed (gzip, xz, lzma, bzip2, zstd, lz4 or lzo), each padded with zero
bytes. The kernel unpacks them in order, so a later file of the same name
wins; so does it here. Nothing is extracted to disk. gzip, xz/lzma and bzip2
are read with Python; zstd, lz4 and lzo with the host's ``zstd``, ``lz4`` and
``lzop``. An archive that cannot be read raises InitramfsUnreadable, and the
caller then does what it would do without knowing the content.
"""

from __future__ import annotations

import bz2
import lzma
import posixpath
import shutil
import subprocess
import threading
import zlib
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import V2VError

NEWC_MAGICS = (b"070701", b"070702")
HEADER_SIZE = 110
TRAILER = "TRAILER!!!"
CHUNK = 1024 * 1024
# Host commands for the formats Python cannot read, by magic number.
DECOMPRESSORS: tuple[tuple[bytes, str, list[str]], ...] = (
    (b"\x28\xb5\x2f\xfd", "zstd", ["zstd", "-d", "-c", "-q"]),
    (b"\x02\x21\x4c\x18", "lz4", ["lz4", "-d", "-c", "-q"]),
    (b"\x89LZO", "lzo", ["lzop", "-d", "-c", "-q"]),
)
S_IFMT = 0o170000
S_IFREG = 0o100000


class InitramfsUnreadable(V2VError):
    """The initramfs is not a cpio archive this reader knows, or its decompressor is missing or failed."""


class _Reader(Protocol):
    def read(self, size: int) -> bytes: ...


@dataclass
class Initramfs:
    """Files of an initramfs: every path (without the leading slash) with its mode, and the wanted contents."""

    files: dict[str, int] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)
    compression: list[str] = field(default_factory=list)

    def module_names(self) -> set[str]:
        """Kernel module names in it (``virtio_blk`` for ``.../virtio_blk.ko.zst``), ``-`` read as ``_``."""
        names = set()
        for path in self.files:
            base = posixpath.basename(path)
            if ".ko" in base and self.files[path] & S_IFMT == S_IFREG:
                names.add(base.split(".ko", 1)[0].replace("-", "_"))
        return names

    def has_module_file(self, version: str, relative: str) -> bool:
        """Whether ``lib/modules/<version>/<relative>`` (a modules.dep path, or usr/lib/...) is in it."""
        return any(f"{prefix}lib/modules/{version}/{relative}" in self.files for prefix in ("", "usr/"))


class _Stream:
    """Exact reads from a file object, counting what was consumed."""

    def __init__(self, raw: _Reader) -> None:
        self.raw = raw
        self.offset = 0

    def read(self, size: int) -> bytes:
        parts = []
        left = size
        while left > 0:
            part = self.raw.read(left)
            if not part:
                break
            parts.append(part)
            left -= len(part)
        data = b"".join(parts)
        self.offset += len(data)
        return data

    def exactly(self, size: int, what: str) -> bytes:
        data = self.read(size)
        if len(data) != size:
            raise InitramfsUnreadable(f"the cpio archive ends inside {what}")
        return data

    def skip(self, size: int, what: str) -> None:
        while size > 0:
            size -= len(self.exactly(min(size, CHUNK), what))


class _Decompressed:
    """A Python decompressor object as a reader; ``rest`` is what follows its stream."""

    def __init__(self, source: IO[bytes], first: bytes, decompressor: Any) -> None:
        self.source = source
        self.pending = first
        self.decompressor = decompressor
        self.buffer = b""
        self.rest = b""

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size and not self.decompressor.eof:
            data = self.pending or self.source.read(CHUNK)
            self.pending = b""
            if not data:
                raise InitramfsUnreadable("the compressed archive is truncated")
            self.buffer += self.decompressor.decompress(data)
        if self.decompressor.eof and not self.rest:
            self.rest = self.decompressor.unused_data
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


def _archive(stream: _Stream, image: Initramfs, want: Collection[str]) -> None:
    """Read one newc archive, up to and with its trailer."""
    while True:
        header = stream.read(HEADER_SIZE)
        if len(header) != HEADER_SIZE or header[:6] not in NEWC_MAGICS:
            raise InitramfsUnreadable(f"no newc cpio header at byte {stream.offset - len(header)} "
                                      "(an archive without its trailer, or not cpio)")
        try:
            fields = [int(header[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        except ValueError as exc:
            raise InitramfsUnreadable(f"a corrupt cpio header at byte {stream.offset - HEADER_SIZE}") from exc
        mode, size, name_size = fields[1], fields[6], fields[11]
        name_bytes = stream.exactly(name_size, "a file name")
        stream.skip((-(HEADER_SIZE + name_size)) % 4, "a file name's padding")
        name = name_bytes.rstrip(b"\0").decode("utf-8", "surrogateescape")
        if name == TRAILER:
            return
        path = posixpath.normpath("/" + name).lstrip("/")
        if path in want and mode & S_IFMT == S_IFREG:
            image.contents[path] = stream.exactly(size, name)
        else:
            image.contents.pop(path, None)  # a later entry of the same name replaces the earlier one
            stream.skip(size, name)
        stream.skip((-size) % 4, "a file's padding")
        if path:
            image.files[path] = mode


def _archives(stream: _Stream, image: Initramfs, want: Collection[str]) -> None:
    """Every archive of a decompressed stream (several may follow each other, with zero padding)."""
    while True:
        byte = stream.read(1)
        while byte == b"\0":
            byte = stream.read(1)
        if not byte:
            return
        _archive(_Stream(_Prefixed(byte, stream)), image, want)


class _Prefixed:
    """A few bytes already read, then the rest of a reader."""

    def __init__(self, prefix: bytes, rest: _Reader) -> None:
        self.prefix = prefix
        self.rest = rest

    def read(self, size: int) -> bytes:
        if self.prefix:
            data, self.prefix = self.prefix[:size], self.prefix[size:]
            return data
        return self.rest.read(size)


def _python_decompressor(magic: bytes) -> tuple[str, Any] | None:
    if magic[:2] == b"\x1f\x8b":
        return "gzip", zlib.decompressobj(31)
    if magic[:6] == b"\xfd7zXZ\x00":
        return "xz", lzma.LZMADecompressor(lzma.FORMAT_XZ)
    if magic[:3] == b"\x5d\x00\x00":
        return "lzma", lzma.LZMADecompressor(lzma.FORMAT_ALONE)
    if magic[:3] == b"BZh":
        return "bzip2", bz2.BZ2Decompressor()
    return None


def _with_command(name: str, argv: list[str], source: IO[bytes], first: bytes,
                  image: Initramfs, want: Collection[str]) -> None:
    """The rest of the file through a host decompressor (it reads to the end of the file)."""
    if shutil.which(argv[0]) is None:
        raise InitramfsUnreadable(f"the initramfs is {name}-compressed and this host has no {argv[0]}",
                                  hint=f"Install {argv[0]} on the conversion host")
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        stdin, stdout = proc.stdin, proc.stdout
        if stdin is None or stdout is None or proc.stderr is None:
            raise InitramfsUnreadable(f"could not start {argv[0]} with pipes")

        def feed() -> None:
            try:
                stdin.write(first)
                shutil.copyfileobj(source, stdin)
            except BrokenPipeError:
                pass
            finally:
                stdin.close()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            _archives(_Stream(stdout), image, want)
        except InitramfsUnreadable:
            proc.kill()
            raise
        finally:
            stdout.read()
            feeder.join()
            err = proc.stderr.read().decode("utf-8", "replace").strip()
        if proc.wait() != 0:
            raise InitramfsUnreadable(f"{' '.join(argv)} failed (exit {proc.returncode}): {err}")


def read_initramfs(path: str, want: Collection[str] = ()) -> Initramfs:
    """List the initramfs at ``path`` (a host file); keep the content of the paths in ``want`` (no leading /)."""
    image = Initramfs()
    wanted = {p.lstrip("/") for p in want}
    with open(path, "rb") as source:
        stream = _Stream(source)
        while True:
            magic = stream.read(6)
            while magic and not magic.strip(b"\0"):
                magic = stream.read(6)
            magic = magic.lstrip(b"\0")
            if magic and len(magic) < 6:
                magic += stream.read(6 - len(magic))
            if not magic:
                break
            if magic in NEWC_MAGICS:
                _archive(_Stream(_Prefixed(magic, stream)), image, wanted)
                image.compression.append("none")
                continue
            decompressor = _python_decompressor(magic)
            if decompressor is not None:
                name, obj = decompressor
                reader = _Decompressed(source, magic, obj)
                try:
                    _archives(_Stream(reader), image, wanted)
                except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
                    raise InitramfsUnreadable(f"the {name}-compressed archive is corrupt: {exc}") from exc
                image.compression.append(name)
                if (reader.rest + source.read()).strip(b"\0"):
                    raise InitramfsUnreadable(f"more data follows the {name}-compressed archive; this reader "
                                              "does not read on after a compressed archive")
                break
            command = next(((n, argv) for m, n, argv in DECOMPRESSORS if magic.startswith(m)), None)
            if command is None:
                raise InitramfsUnreadable(f"unknown initramfs format (starts with {magic.hex()})")
            _with_command(command[0], command[1], source, magic, image, wanted)
            image.compression.append(command[0])
            break
    if not image.files:
        raise InitramfsUnreadable("the initramfs holds no files")
    return image
