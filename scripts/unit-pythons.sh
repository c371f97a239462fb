#!/usr/bin/env bash
# The unit tests under the Pythons the modules run on besides Debian 12's 3.11
# (which `make test` uses): 3.9, the floor (RHEL 9), and 3.12 (Ubuntu 24.04).
# Each gets a virtualenv under .build/ with requirements-unit.txt, rebuilt only
# when that file or the interpreter changes. The Debian-only bindings (guestfs,
# libvirt, nbd, hivex) are not there: tests that need them skip.
# ansible-core is the controller's own (requirements-dev.txt) without its
# controller dependencies: the modules get its module_utils on any target
# Python from 3.8 on, even where the controller itself would not install.
#
#   scripts/unit-pythons.sh                 # 3.9 and 3.12
#   KVMIGRATE_UNIT_PYTHONS="3.10 3.13" scripts/unit-pythons.sh -k slots
#
# Interpreters: pyenv's (PYENV_ROOT, default ~/.pyenv), else pythonX.Y on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

read -r -a versions <<< "${KVMIGRATE_UNIT_PYTHONS:-3.9 3.12}"
pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}

find_python() {  # the newest X.Y.Z under pyenv, else pythonX.Y
  local want=$1 found=""
  if [[ -d $pyenv_root/versions ]]; then
    found=$(find "$pyenv_root/versions" -mindepth 1 -maxdepth 1 -name "$want.*" -printf '%f\n' \
            | grep -E "^${want//./\\.}\.[0-9]+$" | sort -t. -k3,3n | tail -n1 || true)
    if [[ -n $found && -x $pyenv_root/versions/$found/bin/python$want ]]; then
      echo "$pyenv_root/versions/$found/bin/python$want"
      return
    fi
  fi
  command -v "python$want" || true
}

ansible=$(grep -E '^ansible-core==' requirements-dev.txt)
failed=()
for v in "${versions[@]}"; do
  python=$(find_python "$v")
  if [[ -z $python ]]; then
    echo "unit-pythons: no Python $v (looked in $pyenv_root/versions and PATH)" >&2
    failed+=("$v (no interpreter)")
    continue
  fi
  venv=.build/py$v
  want=$( { "$python" -c 'import sys; print(sys.version)'; cat requirements-unit.txt; echo "$ansible"; } \
          | sha256sum | cut -d' ' -f1)
  stamp=$venv/.kvmigrate-requirements
  if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    echo "unit-pythons: preparing $venv ($python)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r requirements-unit.txt
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --ignore-requires-python "$ansible"
    echo "$want" > "$stamp"
  fi
  echo "== unit tests under Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())')"
  if ! "$venv/bin/python" -m pytest -p no:cacheprovider -q -m unit "$@" tests/unit; then
    failed+=("$v")
  fi
done

if ((${#failed[@]})); then
  echo "unit-pythons: failed under Python ${failed[*]}" >&2
  exit 1
fi
echo "unit-pythons: passed under Python ${versions[*]}"
