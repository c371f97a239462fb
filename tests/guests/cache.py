"""The guest cache: one directory per recipe, keyed by a hash, built atomically.

Layout under the cache root (``KVMIGRATE_GUEST_CACHE`` or
``~/.cache/kvmigrate/guests``)::

    <name>-<key16>/            a finished guest (renamed into place when complete)
        guest.json             the recipe, its full key and the guest's facts
    <name>-<key16>.lock        fcntl lock: only one process builds a key at a time
    .<name>-<key16>.build-*/   a build in progress (or the leftovers of a killed one)

The key is the sha256 of the recipe's parameters plus the source text of the
modules that build it, so editing a builder rebuilds its guests and nothing
else. A directory without the ``.build`` prefix is always complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CACHE_ENV = "KVMIGRATE_GUEST_CACHE"
SLOTS_ENV = "KVMIGRATE_QEMU_SLOTS"
GUEST_JSON = "guest.json"
_PACKAGE_DIR = Path(__file__).resolve().parent
_T0 = time.monotonic()


def log(message: str) -> None:
    """Progress on stderr: builds take minutes and people want to see them move."""
    elapsed = time.monotonic() - _T0
    print(f"[guests {time.strftime('%H:%M:%S')} +{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    """Where built guests live; created on first use."""
    env = os.environ.get(CACHE_ENV, "").strip()
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "kvmigrate" / "guests"
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass(frozen=True)
class Recipe:
    """What to build: a name, its parameters and the modules whose source defines it."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    # Module file names inside tests/guests/ whose text goes into the key.
    modules: tuple[str, ...] = ()
    # Keys of other cached artifacts this one is made from (e.g. a rootfs).
    inputs: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        sources = {m: (_PACKAGE_DIR / m).read_text(encoding="utf-8") for m in sorted(self.modules)}
        blob = json.dumps({"name": self.name, "params": dict(self.params), "sources": sources,
                           "inputs": list(self.inputs)}, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    @property
    def dirname(self) -> str:
        return f"{self.name}-{self.key[:16]}"

    def path(self) -> Path:
        return cache_root() / self.dirname

    def is_built(self) -> bool:
        return (self.path() / GUEST_JSON).is_file()


def read_manifest(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / GUEST_JSON).read_text(encoding="utf-8"))
    return data


@contextlib.contextmanager
def file_lock(path: Path, what: str) -> Iterator[None]:
    """An exclusive fcntl lock; says so on stderr when it has to wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another process building {what} ({path})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


BuildFn = Callable[[Path], Mapping[str, Any]]


def ensure_built(recipe: Recipe, build: BuildFn, *, force: bool = False) -> tuple[Path, dict[str, Any]]:
    """Return (directory, manifest) of the finished guest, building it if needed.

    ``build(tmpdir)`` fills a fresh temporary directory and returns the facts
    to record; the directory is renamed into place only after it returned and
    ``guest.json`` was written, so an interrupted build leaves nothing that
    looks finished. Two processes asking for the same key build it once.
    """
    root = cache_root()
    final = root / recipe.dirname
    if not force and (final / GUEST_JSON).is_file():
        return final, read_manifest(final)
    key = recipe.key
    with file_lock(root / f"{recipe.dirname}.lock", recipe.name):
        if not force and (final / GUEST_JSON).is_file():
            return final, read_manifest(final)
        # We hold the lock, so any build directory for this key is a leftover.
        for stale in root.glob(f".{recipe.dirname}.build-*"):
            log(f"removing the leftovers of an interrupted build: {stale}")
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{recipe.dirname}.build-", dir=root))
        start = time.monotonic()
        log(f"building {recipe.name} (key {key[:16]}) in {tmp}")
        try:
            facts = dict(build(tmp))
            manifest = {"name": recipe.name, "key": key, "params": dict(recipe.params),
                        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        "build_seconds": round(time.monotonic() - start, 1), "facts": facts}
            (tmp / GUEST_JSON).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                          encoding="utf-8")
            os.chmod(tmp, 0o755)
            if final.exists():  # only with force: replace the old build
                old = root / f".{recipe.dirname}.build-old-{os.getpid()}"
                final.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log(f"built {recipe.name} in {time.monotonic() - start:.1f} s: {final}")
        return final, manifest


def prune(keep: set[str]) -> list[Path]:
    """Remove finished guests and build leftovers whose directory name is not in ``keep``."""
    removed: list[Path] = []
    root = cache_root()
    for entry in sorted(root.iterdir()):
        if not entry.is_dir():
            continue
        name = entry.name
        if name.startswith("."):
            base = name[1:].split(".build-", 1)[0]
            lock = root / f"{base}.lock"
            # Only remove a build directory when nobody is building it right now.
            with open(lock, "a+b") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
            continue
        if name not in keep and (entry / GUEST_JSON).is_file():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    for lock in sorted(root.glob("*.lock")):
        if lock.stem in keep or (root / lock.stem).exists():
            continue
        with open(lock, "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a build of it is running
            lock.unlink(missing_ok=True)
            removed.append(lock)
    return removed


@contextlib.contextmanager
def qemu_slot(what: str) -> Iterator[None]:
    """Hold one of the host's qemu slots (2 by default: one per core).

    Every qemu this package starts (appliances and boot checks) runs inside a
    slot, across processes, so parallel test runs never oversubscribe the
    host. ``KVMIGRATE_QEMU_SLOTS`` changes the count.
    """
    count = max(1, int(os.environ.get(SLOTS_ENV, "2")))
    slot_dir = Path(tempfile.gettempdir()) / "kvmigrate-qemu-slots"
    slot_dir.mkdir(parents=True, exist_ok=True)
    handles = [open(slot_dir / f"slot{i}.lock", "a+b") for i in range(count)]  # noqa: SIM115
    held = None
    try:
        waited = False
        while held is None:
            for handle in handles:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                held = handle
                break
            if held is None:
                if not waited:
                    log(f"{what}: waiting for a free qemu slot ({count} in use)")
                    waited = True
                time.sleep(0.5)
        yield
    finally:
        if held is not None:
            fcntl.flock(held, fcntl.LOCK_UN)
        for handle in handles:
            handle.close()
