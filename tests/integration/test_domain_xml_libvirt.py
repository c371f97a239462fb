"""The golden domain XML against libvirt itself, and the qemu command against qemu.

- libvirt's RelaxNG schema: ``virt-xml-validate`` (libvirt-clients; it needs
  ``xmllint`` from libxml2-utils) and, independently, lxml on the same schema
  files, so a missing xmllint does not leave the schema unchecked;
- ``test:///default`` through the Python bindings: define, start, undefine;
- the real qemu driver: a private ``qemu:///session`` libvirtd run as
  ``nobody`` in a throw-away runtime directory (no system daemon is touched),
  where every golden domain is defined and then, with its disks made real
  and its NICs on user networking, started paused under TCG: that proves
  firmware autoselection, the devices and the machine type work with qemu;
- the ``output: qemu`` script of several guests run with ``-S``: qemu builds
  every device and quits through QMP.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import (
    Firmware,
    GuestInfo,
    Removable,
    Source,
    SourceCPU,
    SourceNIC,
    TargetDisk,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.qemu_cmd import (
    build_qemu_command,
    ovmf_files,
    render_shell_script,
)
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.target import DomainOptions

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).resolve().parent.parent / "unit" / "data" / "domain_xml"
GOLDEN_XML = sorted(GOLDEN.glob("*.xml"))
SCHEMA = Path("/usr/share/libvirt/schemas/domain.rng")
SESSION_USER = "nobody"
TCG = ["-machine", "accel=tcg", "-cpu", "max"]
QMP_QUIT = '{"execute": "qmp_capabilities"}\n{"execute": "quit"}\n'


def test_there_are_golden_files() -> None:
    assert len(GOLDEN_XML) >= 6, f"run tests/unit/test_domain_xml.py with KVMIGRATE_REGEN_GOLDEN=1 first ({GOLDEN})"


# --- schema ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", GOLDEN_XML, ids=[p.stem for p in GOLDEN_XML])
def test_virt_xml_validate(path: Path) -> None:
    if shutil.which("virt-xml-validate") is None:
        pytest.skip("virt-xml-validate is not installed (package libvirt-clients)")
    if shutil.which("xmllint") is None:
        pytest.skip("virt-xml-validate needs xmllint, which is not installed (package libxml2-utils)")
    proc = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def relaxng() -> etree.RelaxNG:
    if not SCHEMA.is_file():
        pytest.skip(f"libvirt's schema {SCHEMA} is not installed (package libvirt-clients)")
    return etree.RelaxNG(etree.parse(str(SCHEMA)))


@pytest.mark.parametrize("path", GOLDEN_XML, ids=[p.stem for p in GOLDEN_XML])
def test_libvirt_schema(relaxng: etree.RelaxNG, path: Path) -> None:
    ok = relaxng.validate(etree.parse(str(path)))
    assert ok, str(relaxng.error_log)


# --- test:///default ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def test_conn() -> Iterator[object]:
    libvirt = pytest.importorskip("libvirt", reason="the libvirt Python bindings (python3-libvirt) are missing")
    conn = libvirt.open("test:///default")
    yield conn
    conn.close()


@pytest.mark.parametrize("path", GOLDEN_XML, ids=[p.stem for p in GOLDEN_XML])
def test_define_and_start_on_test_driver(test_conn: object, path: Path) -> None:
    import libvirt

    xml = path.read_text(encoding="utf-8")
    ours = etree.fromstring(xml.encode())
    dom = test_conn.defineXML(xml)  # type: ignore[attr-defined]
    try:
        back = etree.fromstring(dom.XMLDesc(0).encode())
        assert back.findtext("name") == ours.findtext("name")
        assert back.findtext("memory") == ours.findtext("memory")
        assert back.find("os").get("firmware") == ours.find("os").get("firmware")
        for xpath in ("devices/disk", "devices/interface", "devices/vsock", "devices/graphics"):
            assert len(back.findall(xpath)) == len(ours.findall(xpath)), xpath
        macs = [m.get("address") for m in ours.findall("devices/interface/mac")]
        assert [m.get("address") for m in back.findall("devices/interface/mac")][:len(macs)] == macs
        dom.create()
        assert dom.isActive()
        dom.destroy()
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            dom.undefine()  # the test driver knows no NVRAM flag (and keeps no NVRAM file)


def test_redefining_needs_the_uuid_and_then_changes_nothing(test_conn: object) -> None:
    """Idempotency: without a <uuid>, libvirt refuses a second define of the same name
    (it would make up a new UUID); with the defined domain's UUID (``options.uuid``)
    the same XML defines the same domain again, unchanged."""
    import libvirt

    case = etree.parse(str(GOLDEN_XML[0])).getroot()
    assert case.find("uuid") is None
    xml = etree.tostring(case, encoding="unicode")
    dom = test_conn.defineXML(xml)  # type: ignore[attr-defined]
    try:
        first = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        with pytest.raises(libvirt.libvirtError, match="already exists"):
            test_conn.defineXML(xml)  # type: ignore[attr-defined]
        uuid = etree.SubElement(case, "uuid")
        uuid.text = dom.UUIDString()
        case.find("name").addnext(uuid)
        again = test_conn.defineXML(etree.tostring(case, encoding="unicode"))  # type: ignore[attr-defined]
        assert again.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == first
    finally:
        dom.undefine()


# --- the real qemu driver, in a private session daemon -----------------------------------------

@dataclass
class Session:
    """A ``qemu:///session`` libvirtd of its own, run as an unprivileged user."""

    base: Path
    user: str

    @property
    def home(self) -> Path:
        # short: libvirt puts unix sockets under it, and their paths have a 108-byte limit
        return self.base / "h"

    @property
    def env(self) -> dict[str, str]:
        home = self.home
        return {"HOME": str(home), "XDG_RUNTIME_DIR": str(self.base / "run"),
                "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
                "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LC_ALL": "C"}

    def virsh(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env_args = [f"{k}={v}" for k, v in self.env.items()]
        argv = ["runuser", "-u", self.user, "--", "env", "-i", *env_args, "virsh", "-q", "-c", "qemu:///session",
                *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"virsh {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def write(self, name: str, text: str) -> Path:
        path = self.home / name
        path.write_text(text, encoding="utf-8")
        os.chown(path, *self._ids())
        return path

    def _ids(self) -> tuple[int, int]:
        pw = pwd.getpwnam(self.user)
        return pw.pw_uid, pw.pw_gid

    def chown_tree(self) -> None:
        uid, gid = self._ids()
        for root, dirs, files in os.walk(self.base):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), uid, gid)
        os.chown(self.base, uid, gid)

    def stop_daemons(self) -> None:
        """Stop the libvirtd/virtlogd that this session autostarted (by their pid files)."""
        for pidfile in sorted((self.base / "run" / "libvirt").glob("*.pid")):
            with contextlib.suppress(ValueError, OSError):
                pid = int(pidfile.read_text().strip())
                os.kill(pid, signal.SIGTERM)


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    if os.geteuid() != 0:
        pytest.skip("the private libvirt session is started as root for an unprivileged user")
    for tool in ("libvirtd", "virsh", "qemu-system-x86_64", "runuser", "qemu-img"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.skip(f"{tool} is not installed")
    try:
        pwd.getpwnam(SESSION_USER)
    except KeyError:
        pytest.skip(f"no user {SESSION_USER!r} to run the libvirt session as")
    base = Path(tempfile.mkdtemp(prefix="kvmv2v-"))
    (base / "run").mkdir(mode=0o700)
    sess = Session(base=base, user=SESSION_USER)
    (sess.home / "disks").mkdir(parents=True)
    sess.chown_tree()
    base.chmod(0o755)
    try:
        yield sess
    finally:
        sess.stop_daemons()
        shutil.rmtree(base, ignore_errors=True)


def _as_tcg(root: etree._Element) -> None:
    """type='kvm' -> 'qemu': the session user cannot open /dev/kvm (and KVM does not work here)."""
    if root.get("type") != "kvm":
        return
    root.set("type", "qemu")
    cpu = root.find("cpu")
    if cpu is not None and cpu.get("mode") in ("host-model", "host-passthrough"):
        cpu.set("mode", "maximum")
    for el in (root.find("features/hyperv"), root.find("clock/timer[@name='hypervclock']")):
        if el is not None:
            el.getparent().remove(el)


@pytest.mark.parametrize("path", GOLDEN_XML, ids=[p.stem for p in GOLDEN_XML])
def test_define_on_qemu_driver(session: Session, path: Path) -> None:
    root = etree.parse(str(path)).getroot()
    name = root.findtext("name")
    _as_tcg(root)
    xml_file = session.write(path.name, etree.tostring(root, encoding="unicode"))
    session.virsh("define", str(xml_file))
    try:
        back = etree.fromstring(session.virsh("dumpxml", "--inactive", name).stdout.encode())
        assert back.find("os/type").get("machine", "").startswith("pc-q35-")
    finally:
        session.virsh("undefine", "--nvram", name, check=False)


def _run_name(stem: str) -> str:
    return f"r{GOLDEN_XML.index(GOLDEN / f'{stem}.xml')}"


def _runnable_here(xml: str, session: Session, stem: str) -> str:
    """The same domain, with what this sandbox lacks swapped out.

    Disks become real (tiny) images in the sandbox, NICs user networking (a
    session has no libvirt networks or bridges), paths under the sandbox, no
    vsock (no vhost-vsock here), TCG instead of KVM (KVM does not work here).
    """
    root = etree.fromstring(xml.encode())
    home = session.home
    root.find("name").text = _run_name(stem)
    _as_tcg(root)
    for index, disk in enumerate(root.findall("devices/disk[@device='disk']")):
        fmt = disk.find("driver").get("type")
        image = home / "disks" / f"{stem}-{index}.{fmt}"
        subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(image), "16M"], check=True)
        disk.find("source").set("file", str(image))
    for nic in root.findall("devices/interface"):
        nic.set("type", "user")
        nic.remove(nic.find("source"))
    for vsock in root.findall("devices/vsock"):
        vsock.getparent().remove(vsock)
    log = root.find("devices/serial/log")
    if log is not None:
        log.set("file", str(home / f"{stem}-serial.log"))
    nvram = root.find("os/nvram")
    if nvram is not None:
        nvram.text = str(home / f"{stem}_VARS.fd")
    session.chown_tree()
    return etree.tostring(root, encoding="unicode")


@pytest.mark.parametrize("path", GOLDEN_XML, ids=[p.stem for p in GOLDEN_XML])
def test_start_paused_on_qemu_driver(session: Session, path: Path) -> None:
    ours = etree.parse(str(path)).getroot()
    xml_file = session.write(f"run-{path.name}", _runnable_here(path.read_text(encoding="utf-8"), session, path.stem))
    name = _run_name(path.stem)
    session.virsh("define", str(xml_file))
    try:
        session.virsh("start", "--paused", name)
        assert session.virsh("domstate", name).stdout.strip() == "paused"
        live = etree.fromstring(session.virsh("dumpxml", name).stdout.encode())
        if ours.find("os").get("firmware") == "efi" or ours.find("os/loader") is not None:
            loader = live.findtext("os/loader") or ""
            secure = ours.find("features/smm") is not None
            assert ("secboot" in loader or ".ms." in loader) == secure, loader
        else:
            assert live.find("os/loader") is None
        assert len(live.findall("devices/disk")) == len(ours.findall("devices/disk"))
    finally:
        session.virsh("destroy", name, check=False)
        session.virsh("undefine", "--nvram", name, check=False)


# --- the qemu command --------------------------------------------------------------------------

def _qemu_case(tmp_path: Path, kind: str) -> tuple[Source, list[TargetDisk], DomainOptions, GuestInfo | None]:
    disks = []
    for index, fmt in enumerate(("qcow2", "raw")):
        image = tmp_path / f"disk{index},x.{fmt}"  # a comma, to prove the escaping
        subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(image), "16M"], check=True)
        disks.append(TargetDisk(path=str(image), format=fmt, bus="virtio", size_bytes=16 << 20))
    source = Source(name=f"qemu-{kind}", hypervisor="vmware", input="vmx", memory_mb=256, vcpus=2,
                    cpu=SourceCPU(sockets=1, cores=2, threads=1),
                    nics=[SourceNIC(mac="00:50:56:9a:00:01", network="VM Network"), SourceNIC(bridge="br0")],
                    removables=[Removable(kind="cdrom"), Removable(kind="floppy"), Removable(kind="cdrom")])
    options = DomainOptions(domain_type="qemu", serial_log=str(tmp_path / "serial.log"))
    guest = None
    if kind == "uefi-secure-boot":
        source.firmware = Firmware(type="uefi", secure_boot=True)
    elif kind == "uefi":
        source.firmware = Firmware(type="uefi")
    elif kind == "scsi-windows":
        options.block_driver = "virtio-scsi"
        options.graphics = True
        guest = GuestInfo(root="/dev/sda2", os_type="windows")
    if source.firmware.type == "uefi":
        _code, template = ovmf_files(source.firmware.secure_boot)
        if not Path(template).is_file():
            pytest.skip(f"OVMF is not installed ({template})")
        vars_copy = tmp_path / "VARS.fd"
        shutil.copyfile(template, vars_copy)
        options.uefi_nvram = str(vars_copy)
    return source, disks, options, guest


@pytest.mark.parametrize("kind", ["bios", "uefi", "uefi-secure-boot", "scsi-windows"])
def test_qemu_script_starts(tmp_path: Path, kind: str) -> None:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    source, disks, options, guest = _qemu_case(tmp_path, kind)
    argv = build_qemu_command(source, disks, options, TCG, guest=guest, qga_socket=str(tmp_path / "qga.sock"))
    script = tmp_path / "boot.sh"
    script.write_text(render_shell_script(argv, comment=f"test {kind}"), encoding="utf-8")
    # -S: build every device but run no guest code; QMP quits at once.
    proc = subprocess.run(["sh", str(script), "-S", "-qmp", "stdio"], input=QMP_QUIT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert '"return": {}' in proc.stdout, proc.stdout
