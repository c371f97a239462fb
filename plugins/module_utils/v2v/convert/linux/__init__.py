# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Linux guests: the converter, and the Linux knowledge inspection shares with it.

``converter``: ``LinuxConverter``, the edits made inside the guest;
``distro``: which packages and files are hypervisor tools, Xen PV driver settings;
``devices``: block device and console names; ``guestnet``: network configuration parsers;
``initramfs``: reading an initramfs on the conversion host.
"""
