"""pytest fixtures for the test guests (register with ``pytest_plugins``).

All fixtures are session-scoped and build into the shared cache on first use;
later runs find the images there and pay nothing. Images are sources: never
write to them (boot with :func:`tests.guests.boot.boot`, which uses an overlay,
or copy them first).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from . import phony, vmware_debian
from .cache import cache_root
from .phony import PhonyGuest
from .vmware_debian import VMwareGuest


@pytest.fixture(scope="session")
def guest_cache() -> Path:
    """The cache root (``KVMIGRATE_GUEST_CACHE`` or ``~/.cache/kvmigrate/guests``)."""
    return cache_root()


@pytest.fixture(scope="session")
def phony_guests() -> dict[str, PhonyGuest]:
    """Every phony guest by name (see ``phony.PHONY_NAMES``), built two at a time."""
    return phony.build_all()


@pytest.fixture(scope="session")
def phony_debian12() -> PhonyGuest:
    return phony.phony_debian12()


@pytest.fixture(scope="session")
def phony_ubuntu2204() -> PhonyGuest:
    return phony.phony_ubuntu2204()


@pytest.fixture(scope="session")
def phony_rocky9() -> PhonyGuest:
    return phony.phony_rocky9()


@pytest.fixture(scope="session")
def phony_debian12_lvm() -> PhonyGuest:
    return phony.phony_debian12_lvm()


@pytest.fixture(scope="session")
def phony_sles15() -> PhonyGuest:
    return phony.phony_sles15()


@pytest.fixture(scope="session")
def blank_disk() -> PhonyGuest:
    return phony.blank_disk()


@pytest.fixture(scope="session")
def vmware_guest() -> VMwareGuest:
    """The real, bootable Debian 12 guest from 'VMware' (root on /dev/sda1)."""
    return vmware_debian.build("plain")


@pytest.fixture(scope="session")
def vmware_guest_lvm() -> VMwareGuest:
    """The same guest with an LVM root and a separate /boot partition."""
    return vmware_debian.build("lvm")


@pytest.fixture(scope="session")
def vmware_guest_most() -> VMwareGuest:
    """The plain guest with Debian's default MODULES=most initramfs (virtio drivers already in it)."""
    return vmware_debian.build("most")
