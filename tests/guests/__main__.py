"""python -m tests.guests list | build NAME... | build-all | boot NAME | boot-image IMAGE... | prune

Builds go to the cache (``KVMIGRATE_GUEST_CACHE`` or ``~/.cache/kvmigrate/guests``);
progress is logged on stderr, results (paths) are printed on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from . import boot as boot_mod
from . import phony, rootfs, vmware_debian
from .cache import cache_root, prune
from .cache import log as progress

VMWARE_NAMES = {vmware_debian.SPECS[layout].name: layout for layout in vmware_debian.LAYOUTS}
ALL_NAMES = (*phony.PHONY_NAMES, *VMWARE_NAMES)


def _recipe(name: str) -> Any:
    if name in VMWARE_NAMES:
        return vmware_debian.recipe(VMWARE_NAMES[name])
    return phony.recipe(name)


def _build(name: str) -> dict[str, Any]:
    guest: Any = vmware_debian.build(VMWARE_NAMES[name]) if name in VMWARE_NAMES else phony.build(name)
    data: dict[str, Any] = json.loads(json.dumps(asdict(guest), default=str))
    return data


def cmd_list(_args: argparse.Namespace) -> int:
    print(f"cache: {cache_root()}")
    rows = [("debian12-rootfs", rootfs.recipe())] + [(n, _recipe(n)) for n in ALL_NAMES]
    for name, recipe in rows:
        state = "built" if recipe.is_built() else "not built"
        print(f"{name:22} {state:10} {recipe.path()}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    unknown = [n for n in args.names if n not in ALL_NAMES]
    if unknown:
        print(f"unknown guest(s): {', '.join(unknown)}; known: {', '.join(ALL_NAMES)}", file=sys.stderr)
        return 2
    for name in args.names:
        print(json.dumps({name: _build(name)}, indent=2))
    return 0


def cmd_build_all(_args: argparse.Namespace) -> int:
    start = time.monotonic()
    # Two at a time: the host has two cores, and every build holds a qemu slot
    # while its appliance runs. The debootstrap tree is built once, under a lock.
    # Two at a time (two cores; every appliance holds a qemu slot). One worker
    # builds the VMware guest, waiting for debootstrap first; the other builds
    # the phony guests meanwhile, then the LVM layout from the same tree.
    names = list(VMWARE_NAMES)
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(_build, names[0])
        rest = pool.submit(lambda: [phony.build_all(phony.PHONY_NAMES, parallel=1),
                                    *[_build(n) for n in names[1:]]])
        first.result()
        rest.result()
    progress(f"all guests ready in {time.monotonic() - start:.1f} s")
    return cmd_list(_args)


def cmd_boot(args: argparse.Namespace) -> int:
    if args.name in VMWARE_NAMES:
        guest = vmware_debian.build(VMWARE_NAMES[args.name])
        image, fmt, mac = guest.raw, "raw", guest.mac
    else:
        pguest = phony.build(args.name)
        image, fmt, mac = pguest.disk, pguest.format, None
    result = boot_mod.boot(image, fmt, disk_bus=args.bus, nic_model=args.nic, mac=mac, firmware=args.firmware,
                           timeout=args.timeout, nic_slot=args.nic_slot)
    print(json.dumps({"booted": result.booted, "reason": result.reason, "seconds": round(result.seconds, 1),
                      "markers": result.markers, "log": str(result.log_path)}, indent=2))
    return 0 if result.booted else 1


def cmd_boot_image(args: argparse.Namespace) -> int:
    result = boot_mod.boot(args.images, args.format, disk_bus=args.bus, nic_model=args.nic, mac=args.mac,
                           firmware=args.firmware, timeout=args.timeout)
    print(json.dumps({"booted": result.booted, "reason": result.reason, "seconds": round(result.seconds, 1),
                      "markers": result.markers, "log": str(result.log_path)}, indent=2))
    return 0 if result.booted else 1


def cmd_prune(_args: argparse.Namespace) -> int:
    keep = {rootfs.recipe().dirname} | {_recipe(n).dirname for n in ALL_NAMES}
    for path in prune(keep):
        print(f"removed {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.guests", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="show every guest, whether it is built, and where").set_defaults(func=cmd_list)
    p_build = sub.add_parser("build", help="build the named guests")
    p_build.add_argument("names", nargs="+", metavar="NAME", help=", ".join(ALL_NAMES))
    p_build.set_defaults(func=cmd_build)
    sub.add_parser("build-all", help="build every guest (two at a time)").set_defaults(func=cmd_build_all)
    p_boot = sub.add_parser("boot", help="boot a guest (through an overlay) and wait for its marker")
    p_boot.add_argument("name", choices=ALL_NAMES)
    p_boot.add_argument("--bus", default="sata", choices=boot_mod.DISK_BUSES)
    p_boot.add_argument("--nic", default="e1000", choices=tuple(boot_mod.NIC_MODELS))
    p_boot.add_argument("--nic-slot", type=int, default=None, help="e.g. 192 for VMware's ens192 (uses q35)")
    p_boot.add_argument("--firmware", default="bios", choices=("bios", "uefi"))
    p_boot.add_argument("--timeout", type=float, default=300)
    p_boot.set_defaults(func=cmd_boot)
    p_image = sub.add_parser("boot-image", help="boot disk images (e.g. a converted guest) through overlays")
    p_image.add_argument("images", nargs="+", metavar="IMAGE")
    p_image.add_argument("--format", default="raw", choices=("raw", "qcow2"))
    p_image.add_argument("--bus", default="virtio-blk", choices=boot_mod.DISK_BUSES)
    p_image.add_argument("--nic", default="virtio", choices=tuple(boot_mod.NIC_MODELS))
    p_image.add_argument("--mac", default=None)
    p_image.add_argument("--firmware", default="bios", choices=("bios", "uefi"))
    p_image.add_argument("--timeout", type=float, default=300)
    p_image.set_defaults(func=cmd_boot_image)
    sub.add_parser("prune", help="delete cached guests that no current recipe produces").set_defaults(
        func=cmd_prune)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
