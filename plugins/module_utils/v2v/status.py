# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``status.json``: the progress of one guest's run, readable while it runs.

Written atomically (temporary name, then rename) so a reader never sees half
a file. A follow-up task (or ``async_status`` user) reads it to show the
current phase and the copy percentage.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StatusFile:
    path: str
    guest: str
    data: dict[str, Any] = field(default_factory=dict)

    def update(self, **values: Any) -> None:
        if not self.data:
            self.data = {"guest": self.guest, "state": "running", "phase": None, "percent": None,
                         "started": time.time(), "phases": []}
        self.data.update(values)
        self.data["updated"] = time.time()
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.data, handle, indent=1)
        os.replace(tmp, self.path)

    def phase(self, name: str) -> None:
        self.data.setdefault("phases", []).append({"name": name, "started": time.time()})
        self.update(phase=name, percent=None)


def read_status(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
