# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``output: null``: convert in the overlay and write nothing (a dry run that really converts).

Useful to prove that a guest converts, and to measure the conversion
without the copy. Never ``changed: false`` from a record: there is none.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.model import TargetDisk
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.outputs.base import Output, OutputJob
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.target import TargetHardware


class NullOutput(Output):
    kind = "null"
    copies_disks = False

    def disk_dir(self, job: OutputJob) -> str:
        return ""

    def prepare(self, job: OutputJob, hardware: TargetHardware, domain_xml: str) -> list[str]:
        self.domain_xml = domain_xml
        return ["write nothing (output null)"]

    def write(self, job: OutputJob, disks: list[TargetDisk]) -> dict[str, Any]:
        return {"disks": [d.to_dict() for d in disks], "domain_xml": self.domain_xml}
