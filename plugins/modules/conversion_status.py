#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmigrate.v2v contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: conversion_status
short_description: Read the progress of a guest's conversion from its status file
description:
  - Reads C(<work_dir>/kvmigrate-<name>/status.json), which M(kvmigrate.v2v.convert_guest) writes while it
    runs, and returns the state, the current phase, the copy percentage and the duration of every phase.
  - Meant to be called while a conversion runs under C(async), to show progress, and after it ended.
  - Reading never changes anything; the module always returns C(changed=false).
  - A guest that has no status file yet (never converted here, or with another O(work_dir)) is not an
    error; RV(exists) is V(false) then, unless O(must_exist=true).
version_added: 0.1.0
author:
  - kvmigrate.v2v contributors (@kvmigrate)
attributes:
  check_mode:
    support: full
    description: Reads the file the same way; nothing is written in either mode.
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to compare.
options:
  name:
    description:
      - The name of the converted guest, as given to M(kvmigrate.v2v.convert_guest) in its O(name) option
        (or the source's name when that was not set).
    type: str
    required: true
  work_dir:
    description:
      - The O(kvmigrate.v2v.convert_guest#module:work_dir) the conversion was run with.
    type: path
    default: /var/tmp
  must_exist:
    description:
      - Fail when the guest has no status file.
    type: bool
    default: false
  wait_seconds:
    description:
      - Before reading, wait up to this many seconds for the conversion, or one of O(watch), to end, and
        return as soon as one does, that is when its status turns V(done), V(failed) or V(check), or when a
        status that was already final when the wait began (a previous run's) is written again in a final state.
      - RV(ended) names the conversions that ended; it is empty when the time ran out.
      - Meant for a loop that waits on several conversions under C(async) (as the C(kvmigrate.v2v.migrate)
        role does), so that it looks at the jobs when one ends, not only every so many seconds.
      - V(0) reads at once.
    type: int
    default: 0
  watch:
    description:
      - More conversions whose end also ends the wait of O(wait_seconds); the status returned is still
        the one of O(name).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The guest name, as in O(name).
        type: str
        required: true
      work_dir:
        description: Its work directory; the default is this task's O(work_dir).
        type: path
seealso:
  - module: kvmigrate.v2v.convert_guest
"""

EXAMPLES = r"""
- name: Convert in the background
  kvmigrate.v2v.convert_guest:
    input: ova
    path: /srv/exports/web01.ova
    output: libvirt
    pool: default
  async: 7200
  poll: 0
  register: web01_job

- name: Show where the conversion is
  kvmigrate.v2v.conversion_status:
    name: web01
  register: web01_status

- name: Print it
  ansible.builtin.debug:
    msg: "{{ web01_status.state }} in {{ web01_status.phase }} ({{ web01_status.percent | default('-', true) }} %)"
- name: Wait up to a minute for web01 or db01 to finish converting
  kvmigrate.v2v.conversion_status:
    name: web01
    wait_seconds: 60
    watch:
      - name: db01
  register: first_to_end
"""

RETURN = r"""
guest:
  description: The guest name recorded in the status file (O(name) when there is none).
  returned: always
  type: str
status_file:
  description: The status file read.
  returned: always
  type: str
  sample: /var/tmp/kvmigrate-web01/status.json
exists:
  description: Whether the status file exists.
  returned: always
  type: bool
state:
  description:
    - V(running) while convert_guest runs, V(done) after a conversion, V(failed) after a failure.
      A check-mode run of convert_guest writes no status (its own status stays in memory).
    - A V(running) state whose RV(age_seconds) keeps growing belongs to a run that was killed.
  returned: when RV(exists)
  type: str
phase:
  description: >-
    The current (or last) phase, one of V(queued) (a run with C(max_concurrent) waiting for its slot),
    V(open), V(inspect), V(preflight), V(convert), V(trim), V(copy), V(output).
  returned: when RV(exists)
  type: str
percent:
  description: How much of the copy is done, during and after the V(copy) phase; null before it.
  returned: when RV(exists)
  type: float
error:
  description: The error message of a failed run.
  returned: when RV(state=failed)
  type: str
started:
  description: When the run started (seconds since the epoch).
  returned: when RV(exists)
  type: float
updated:
  description: When the status was last written (seconds since the epoch).
  returned: when RV(exists)
  type: float
elapsed_seconds:
  description: Seconds from the start to now (running) or to the last update (finished).
  returned: when RV(exists)
  type: float
age_seconds:
  description: Seconds since the status was last written.
  returned: when RV(exists)
  type: float
ended:
  description: The guests (O(name) and O(watch)) whose conversion ended during the wait.
  returned: when O(wait_seconds) is more than 0
  type: list
  elements: str
  sample: [db01]
waited_seconds:
  description: How long the module waited.
  returned: when O(wait_seconds) is more than 0
  type: float
phases:
  description:
    - Each phase so far, in order, with C(name) and C(seconds); a phase lasts until the next one starts,
      the current one of a running conversion until now.
  returned: always
  type: list
  elements: dict
  sample: [{name: open, seconds: 0.4}, {name: inspect, seconds: 9.1}, {name: convert, seconds: 61.0}]
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.status import read_conversion_status, wait_for_end

ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "work_dir": {"type": "path", "default": "/var/tmp"},
    "must_exist": {"type": "bool", "default": False},
    "wait_seconds": {"type": "int", "default": 0},
    "watch": {"type": "list", "elements": "dict", "default": [], "options": {
        "name": {"type": "str", "required": True},
        "work_dir": {"type": "path"},
    }},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    if params["wait_seconds"] < 0:
        module.fail_json(msg=f"wait_seconds must be 0 or more, not {params['wait_seconds']}")
    waited: dict[str, object] = {}
    if params["wait_seconds"] > 0:
        watched = [(params["work_dir"], params["name"])] + [
            (entry["work_dir"] or params["work_dir"], entry["name"]) for entry in params["watch"]]
        start = time.monotonic()
        waited["ended"] = wait_for_end(watched, params["wait_seconds"])
        waited["waited_seconds"] = round(time.monotonic() - start, 3)
    try:
        status = read_conversion_status(params["work_dir"], params["name"])
    except (OSError, ValueError) as exc:
        module.fail_json(msg=f"cannot read the status of {params['name']}: {exc}")
    if module.params["must_exist"] and not status.exists:
        module.fail_json(msg=f"{module.params['name']}: no conversion status at {status.status_file}. Check name and "
                             "work_dir against the convert_guest task", status_file=status.status_file)
    data = {k: v for k, v in status.to_dict().items() if status.exists or k in ("guest", "status_file", "exists", "phases")}
    module.exit_json(changed=False, **data, **waited)


if __name__ == "__main__":
    main()
