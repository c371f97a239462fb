"""Run modules the way users do: through ansible-playbook, and read back what they returned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent


@dataclass
class PlaybookRun:
    rc: int
    output: str
    results: dict[str, Any]


def run_tasks(tasks: list[dict[str, Any]], tmp_path: Path, *, check: bool = False,
              extra_args: list[str] | None = None) -> PlaybookRun:
    """Run ``tasks`` on localhost; each task's registered result is saved under its ``register`` name."""
    results_file = tmp_path / f"results-{os.getpid()}-{len(list(tmp_path.iterdir()))}.json"
    registered = [t["register"] for t in tasks if "register" in t]
    body = [dict(t, ignore_errors=True) if "register" in t else t for t in tasks]
    save = {"name": "Save results", "ansible.builtin.copy": {
        "dest": str(results_file),
        "content": "{{ {" + ", ".join(f"'{r}': {r} | default(None)" for r in registered) + "} | to_json }}",
    }, "check_mode": False}
    play = [{"name": "test", "hosts": "localhost", "gather_facts": False, "tasks": [*body, save]}]
    playbook = tmp_path / f"play-{len(list(tmp_path.iterdir()))}.yml"
    playbook.write_text(yaml.safe_dump(play, sort_keys=False))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_NOCOLOR="1")
    inventory = REPO / "playbooks/inventory/localhost.yml"
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(playbook),
            *(extra_args or [])]
    if check:
        argv.append("--check")
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    return PlaybookRun(rc=proc.returncode, output=proc.stdout + proc.stderr, results=results)
