# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One exception family for the engine.

Raised deep, caught once in a module's ``main()`` and turned into
``fail_json``. Every message says what failed, on what, and what to do.
"""

from __future__ import annotations

from typing import Any


class V2VError(Exception):
    """Base of every error the engine raises on purpose."""

    def __init__(self, message: str, *, subject: str | None = None,
                 hint: str | None = None, phase: str | None = None) -> None:
        self.message = message
        self.subject = subject
        self.hint = hint
        self.phase = phase
        # The conversion log of the failed run, when there is one (convert_guest sets it).
        self.log_path: str | None = None
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = self.message
        if self.subject and self.subject not in text:
            text = f"{self.subject}: {text}"
        if self.hint:
            text = f"{text}. {self.hint}" if not text.endswith(".") else f"{text} {self.hint}"
        return text

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"msg": str(self), "error": type(self).__name__}
        if self.phase:
            data["phase"] = self.phase
        if self.subject:
            data["subject"] = self.subject
        if self.log_path:
            data["log_path"] = self.log_path
        return data


class SourceError(V2VError):
    """The source cannot be read or makes no sense (bad VMX, missing disk ...)."""


class UnsafeImageError(SourceError):
    """A disk image whose header points outside itself (backing file, extents)."""


class ToolError(V2VError):
    """An external tool exited with an error."""

    def __init__(self, argv: list[str], returncode: int, stderr: str,
                 *, hint: str | None = None, subject: str | None = None) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        tool = argv[0] if argv else "?"
        detail = self.stderr or "(no error output)"
        super().__init__(f"{tool} failed with exit code {returncode}: {detail}",
                         subject=subject, hint=hint)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.update(cmd=self.argv, rc=self.returncode, stderr=self.stderr)
        return data


class ApplianceError(V2VError):
    """libguestfs could not start or an operation inside it failed."""


class InspectionError(V2VError):
    """Inspection found no operating system, or several without a choice."""


class PreflightError(V2VError):
    """A blocker was found before anything was copied."""

    def __init__(self, findings: list[Any], *, subject: str | None = None) -> None:
        self.findings = findings
        text = "; ".join(f"{f.code}: {f.message}" for f in findings)
        super().__init__(f"conversion blocked: {text}", subject=subject, phase="preflight")


class ConversionError(V2VError):
    """Editing the guest failed."""


class OutputError(V2VError):
    """Writing the target failed."""


class LibvirtError(V2VError):
    """libvirt could not be reached, or refused or failed an operation on a domain, pool or volume."""


class NotSupportedError(V2VError):
    """A feature that is documented as not supported yet."""
