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
    runs, and returns the state, the current phase, the copy percentage and the duration of every phase,
    and what became of the conversion - its RV(outcome), its wall time (RV(seconds)) and its RV(output_dir) -
    so that a playbook need not work them out.
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
  result:
    description:
      - The registered result of the M(kvmigrate.v2v.convert_guest) task, or of C(ansible.builtin.async_status)
        for its job, once the job has finished.
      - With it, RV(outcome), RV(failed_phase), RV(error) and RV(seconds) judge that run, also when it wrote
        no status file (an up-to-date output, a check-mode run, a failure before the status was written).
      - Without it they are what the status file alone says.
    type: dict
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
- name: Collect the finished conversion
  ansible.builtin.async_status:
    jid: "{{ web01_job.ansible_job_id }}"
  register: web01_result
  until: web01_result.finished
  retries: 720
  delay: 10
  ignore_errors: true

- name: Judge it
  kvmigrate.v2v.conversion_status:
    name: web01
    result: "{{ web01_result }}"
  register: web01_final

- name: Print the outcome
  ansible.builtin.debug:
    msg: "web01 {{ web01_final.outcome }} in {{ web01_final.seconds }} s {{ web01_final.error | default('') }}"

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
  description:
    - The error message of a failed run (with O(result), the result's message).
  returned: when RV(state=failed), or when RV(outcome) is V(failed) or V(blocked)
  type: str
outcome:
  description:
    - What became of the conversion.
    - V(queued) (waiting for its slot, C(max_concurrent)) and V(running) while it runs.
    - V(converted) when it wrote its output, V(up-to-date) when the output already was (nothing done),
      V(planned) when a check-mode run would convert, V(blocked) when preflight stopped it before anything
      was written, V(failed) when it failed.
    - V(up-to-date) and V(planned) come only from O(result) (such runs write no status); from the status file
      alone, V(blocked) needs a status written by this version of the collection.
    - Null without a status file and without O(result).
  returned: always
  type: str
  sample: converted
failed_phase:
  description: The phase a V(failed) or V(blocked) conversion failed in (V(open) when it failed reading its source).
  returned: when RV(outcome) is V(failed) or V(blocked)
  type: str
  sample: preflight
seconds:
  description:
    - The wall time of the conversion, without the time it was V(queued) for a slot.
    - For a run that converted or failed after opening its source, from its start to its end as its status
      file says (this includes the appliance's start, which RV(phases) leave out); otherwise the sum of the
      run's phases (O(result)'s, else the status file's). Null without either.
  returned: always
  type: float
output_dir:
  description:
    - The output directory the conversion wrote to (convert_guest's O(kvmigrate.v2v.convert_guest#module:output_dir)).
    - Absent for outputs without a directory (O(kvmigrate.v2v.convert_guest#module:output=libvirt)).
  returned: when known
  type: str
  sample: /var/lib/libvirt/images/web01
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.ansible_glue import options_from_params, run_module
from ansible_collections.kvmigrate.v2v.plugins.module_utils.v2v.status import StatusQuery, report_status

ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "work_dir": {"type": "path", "default": "/var/tmp"},
    "must_exist": {"type": "bool", "default": False},
    "wait_seconds": {"type": "int", "default": 0},
    "watch": {"type": "list", "elements": "dict", "default": [], "options": {
        "name": {"type": "str", "required": True},
        "work_dir": {"type": "path"},
    }},
    "result": {"type": "dict"},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    run_module(module, lambda: report_status(options_from_params(StatusQuery, module.params),
                                             check_mode=module.check_mode))


if __name__ == "__main__":
    main()
