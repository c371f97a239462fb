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
phases:
  description:
    - Each phase so far, in order, with C(name) and C(seconds); a phase lasts until the next one starts,
      the current one of a running conversion until now.
  returned: always
  type: list
  elements: dict
  sample: [{name: open, seconds: 0.4}, {name: inspect, seconds: 9.1}, {name: convert, seconds: 61.0}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.status import read_conversion_status

ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "work_dir": {"type": "path", "default": "/var/tmp"},
    "must_exist": {"type": "bool", "default": False},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        status = read_conversion_status(module.params["work_dir"], module.params["name"])
    except (OSError, ValueError) as exc:
        module.fail_json(msg=f"cannot read the status of {module.params['name']}: {exc}")
    if module.params["must_exist"] and not status.exists:
        module.fail_json(msg=f"{module.params['name']}: no conversion status at {status.status_file}. Check name and "
                             "work_dir against the convert_guest task", status_file=status.status_file)
    data = {k: v for k, v in status.to_dict().items() if status.exists or k in ("guest", "status_file", "exists", "phases")}
    module.exit_json(changed=False, **data)


if __name__ == "__main__":
    main()
