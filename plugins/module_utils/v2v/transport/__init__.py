# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Transports the engine uses to reach other machines.

- ``ssh``: the one SSH layer (host-key policy, key loading, sessions with
  SFTP, the nbdkit-ssh disk server), used by the inputs that read over SSH
  and by P2V's tunnel.
"""

from __future__ import annotations
