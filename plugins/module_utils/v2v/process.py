# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run external tools: argument lists only, exit codes always checked."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.errors import ToolError, V2VError


def require_tool(name: str, package: str) -> str:
    """Return the full path of ``name`` or fail saying which package provides it."""
    path = shutil.which(name)
    if path is None:
        raise V2VError(f"the tool {name!r} is not installed",
                       hint=f"Install the package {package!r} on the conversion host")
    return path


def run_tool(argv: Sequence[str], *, timeout: float | None = None,
             env: Mapping[str, str] | None = None, hint: str | None = None,
             subject: str | None = None, input_text: str | None = None) -> str:
    """Run ``argv``, return its stdout; raise ToolError with its stderr on failure."""
    args = [str(a) for a in argv]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              env=dict(env) if env is not None else None, check=False,
                              input=input_text)
    except FileNotFoundError as exc:
        raise V2VError(f"the tool {args[0]!r} is not installed", subject=subject,
                       hint=hint or "Install it on the conversion host (see bindep.txt)") from exc
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise ToolError(args, -1, f"timed out after {timeout} seconds. {stderr}",
                        hint=hint, subject=subject) from exc
    if proc.returncode != 0:
        raise ToolError(args, proc.returncode, proc.stderr or proc.stdout, hint=hint, subject=subject)
    return proc.stdout
