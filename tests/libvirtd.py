"""A private libvirtd (+ virtlogd) for tests, started as root in a mount namespace of its own.

The daemons see their own ``/etc/libvirt``, ``/var/lib/libvirt``,
``/var/log/libvirt``, ``/var/cache/libvirt`` and ``/run`` (all under one
temporary directory), so nothing they define, log or lock touches the host's
libvirt or another test run's. Clients reach them through the socket, which
lives in that directory: ``qemu:///system?socket=<dir>/run/libvirt-sock``.

``stop()`` destroys the domains still running, stops exactly the two daemons
it started (by their pids) and any qemu they left behind (by the pid files in
the private run directory), then removes the directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LIBVIRTD = "/usr/sbin/libvirtd"
VIRTLOGD = "/usr/sbin/virtlogd"
START_TIMEOUT = 30.0
CAPS_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kvmigrate" / "libvirt-cache"

# Runs inside `unshare --mount`: private mounts, then both daemons.
_NAMESPACE_SCRIPT = r"""
set -e
B="$1"
mount -t tmpfs -o mode=0755 kvmigrate-run /run
mkdir -p /run/libvirt /run/lock
mount --bind "$B/run" /run/libvirt
mount --bind "$B/etc" /etc/libvirt
mount --bind "$B/lib" /var/lib/libvirt
mount --bind "$B/log" /var/log/libvirt
mount --bind "$B/cache" /var/cache/libvirt
"$2" --daemon --pid-file "$B/virtlogd.pid" --config "$B/etc/virtlogd.conf"
exec "$3" --pid-file "$B/libvirtd.pid" --config "$B/etc/libvirtd.conf"
"""

# qemu runs as root: test images sit in private temporary directories that
# the libvirt-qemu user cannot enter.
_QEMU_CONF = """user = "root"
group = "root"
remember_owner = 0
"""


class LibvirtdUnavailable(RuntimeError):
    """This host cannot run a private libvirtd (not root, not installed, no mount namespaces)."""


@dataclass
class PrivateLibvirtd:
    base: Path
    process: subprocess.Popen[bytes]
    virtlogd_pid: int | None = None
    stopped: bool = field(default=False)

    @property
    def socket(self) -> Path:
        return self.base / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.socket}"

    @property
    def daemon_log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.base / "daemon.log").read_text(errors="replace")
        return ""

    def virsh(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["virsh", "-q", "-c", self.uri, *args], capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"virsh {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def domains(self) -> list[str]:
        return [n for n in self.virsh("list", "--all", "--name").stdout.split() if n]

    def volumes(self, pool: str) -> list[str]:
        self.virsh("pool-refresh", pool)
        return [line.split()[0] for line in self.virsh("vol-list", pool).stdout.splitlines() if line.strip()]

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.process.poll() is None:
            for name in self.virsh("list", "--name", check=False, timeout=30).stdout.split():
                self.virsh("destroy", name, check=False, timeout=30)
        # qemu processes the daemon started, found by its own pid files
        qemu_pids = []
        for pidfile in (self.base / "run" / "qemu").glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                qemu_pids.append(int(pidfile.read_text().strip()))
        _terminate(self.process.pid, self.process)
        if self.virtlogd_pid:
            _terminate(self.virtlogd_pid)
        for pid in qemu_pids:
            _terminate(pid)
        self._keep_caps_cache()
        shutil.rmtree(self.base, ignore_errors=True)

    def _keep_caps_cache(self) -> None:
        if not (self.base / "cache" / "qemu").is_dir():
            return
        fresh = CAPS_CACHE.with_name(f"{CAPS_CACHE.name}.{os.getpid()}")
        try:
            shutil.rmtree(fresh, ignore_errors=True)
            shutil.copytree(self.base / "cache", fresh, symlinks=True)
            shutil.rmtree(CAPS_CACHE, ignore_errors=True)
            fresh.rename(CAPS_CACHE)
        except OSError:
            shutil.rmtree(fresh, ignore_errors=True)


def _terminate(pid: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 15.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            if process.poll() is not None:
                return
        elif not _alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if process is not None:
        process.wait(timeout=5)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split()[2] != "Z"
    except (OSError, IndexError):
        return False


def check_available() -> None:
    if os.geteuid() != 0:
        raise LibvirtdUnavailable("the private libvirtd runs as root")
    for tool in (LIBVIRTD, VIRTLOGD):
        if not os.access(tool, os.X_OK):
            raise LibvirtdUnavailable(f"{tool} is not installed (package libvirt-daemon-system)")
    for tool in ("unshare", "virsh", "qemu-system-x86_64"):
        if shutil.which(tool) is None:
            raise LibvirtdUnavailable(f"{tool} is not installed")


def start_libvirtd(timeout: float = START_TIMEOUT) -> PrivateLibvirtd:
    """Start virtlogd + libvirtd in a private mount namespace and wait until libvirtd answers."""
    check_available()
    # short: libvirt's unix socket paths must stay under 108 bytes
    base = Path(tempfile.mkdtemp(prefix="kvl-", dir="/tmp"))
    os.chmod(base, 0o755)
    for sub in ("run", "lib", "log"):
        (base / sub).mkdir()
    # as the libvirt package ships it: where domains' logs (and serial logs) go
    (base / "log" / "qemu").mkdir()
    # libvirt's probe of qemu's capabilities takes seconds; it revalidates a cached copy itself
    if CAPS_CACHE.is_dir():
        shutil.copytree(CAPS_CACHE, base / "cache", symlinks=True)
    else:
        (base / "cache").mkdir()
    shutil.copytree("/etc/libvirt", base / "etc", symlinks=True)
    # no autostarted networks: they would create bridges in the host's network namespace
    shutil.rmtree(base / "etc" / "qemu" / "networks" / "autostart", ignore_errors=True)
    (base / "etc" / "qemu.conf").write_text(_QEMU_CONF)
    (base / "etc" / "libvirtd.conf").write_text(
        f'log_outputs = "3:file:{base}/log/libvirtd.log"\nunix_sock_rw_perms = "0700"\n')
    (base / "etc" / "virtlogd.conf").write_text(f'log_outputs = "3:file:{base}/log/virtlogd.log"\n')
    log = open(base / "daemon.log", "wb")  # noqa: SIM115  # the daemon keeps writing to it
    try:
        process = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                    _NAMESPACE_SCRIPT, "kvl", str(base), VIRTLOGD, LIBVIRTD],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    finally:
        log.close()
    daemon = PrivateLibvirtd(base=base, process=process)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                raise LibvirtdUnavailable(f"libvirtd exited with code {process.returncode}: {daemon.daemon_log}")
            pidfile = base / "virtlogd.pid"
            if daemon.virtlogd_pid is None and pidfile.exists():
                with contextlib.suppress(ValueError):
                    daemon.virtlogd_pid = int(pidfile.read_text().strip())
            if daemon.socket.exists() and daemon.virsh("version", check=False, timeout=10).returncode == 0:
                return daemon
            if time.monotonic() > deadline:
                raise LibvirtdUnavailable(f"libvirtd did not answer within {timeout:.0f} s: {daemon.daemon_log}")
            time.sleep(0.2)
    except BaseException:
        daemon.stop()
        raise


# --- storage pools -------------------------------------------------------------------------------

@dataclass
class LoopDevice:
    image: Path
    device: str

    def detach(self) -> None:
        subprocess.run(["losetup", "-d", self.device], capture_output=True, check=False)


def attach_loop(image: Path, size: int, fill: bytes | None = None) -> LoopDevice:
    """A loop device on a new image of ``size`` bytes (optionally filled with a byte, to catch unwritten holes)."""
    with open(image, "wb") as handle:
        if fill is None:
            handle.truncate(size)
        else:
            chunk = fill * (1 << 20)
            for _mib in range(size >> 20):
                handle.write(chunk)
    device = subprocess.run(["losetup", "--find", "--show", "--partscan", str(image)], capture_output=True,
                            text=True, check=True).stdout.strip()
    return LoopDevice(image=image, device=device)


def define_dir_pool(daemon: PrivateLibvirtd, name: str, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    daemon.virsh("pool-define-as", name, "dir", "--target", str(path))
    daemon.virsh("pool-start", name)


def define_disk_pool(daemon: PrivateLibvirtd, name: str, loop: LoopDevice) -> None:
    xml = (f"<pool type='disk'><name>{name}</name><source><device path='{loop.device}'/>"
           "<format type='gpt'/></source><target><path>/dev</path></target></pool>")
    xml_file = daemon.base / f"pool-{name}.xml"
    xml_file.write_text(xml)
    daemon.virsh("pool-define", str(xml_file))
    daemon.virsh("pool-build", name, "--overwrite")
    daemon.virsh("pool-start", name)


def remove_pool(daemon: PrivateLibvirtd, name: str) -> None:
    daemon.virsh("pool-destroy", name, check=False)
    daemon.virsh("pool-undefine", name, check=False)
