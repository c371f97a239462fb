#!/usr/bin/env bash
# make lint: ruff, the Python 3.9 floor (vermin), mypy, ansible-test sanity (local, Python 3.11,
# no containers), ansible-lint (production).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/.venv/bin:$PATH

echo "== ruff"
ruff check .

# plugins/ runs on the conversion host's Python, 3.9 at the oldest; the unit
# tests run under 3.9 as well (scripts/unit-pythons.sh). vermin flags library
# features newer than that (zip(strict=), enum.StrEnum, datetime.UTC, ...);
# annotations are not evaluated (from __future__ import annotations).
echo "== Python 3.9 floor (vermin)"
vermin -q -vvv --no-tips --violations -t=3.9- --no-make-paths-absolute plugins tests/unit tests/conftest.py

echo "== mypy (plugins/module_utils, Python 3.9)"
scripts/typecheck.sh

# ansible-test must run from inside an ansible_collections/<ns>/<name> tree;
# lint a copy of exactly the files git would ship (tracked + new, not ignored).
echo "== ansible-test sanity"
# LINT_BUILD lets parallel lint runs use separate copies.
build=${LINT_BUILD:-.build/lint}
tree=$build/ansible_collections/kvmigrate/v2v
rm -rf "$build"
mkdir -p "$tree"
git ls-files -z --cached --others --exclude-standard | rsync -a --ignore-missing-args --from0 --files-from=- ./ "$tree/"
( cd "$tree" && git init -q && git add -A && \
  ansible-test sanity --local --python 3.11 --color no 2>&1 | grep -v "^WARNING: Location" ) || {
  echo "ansible-test sanity failed" >&2; exit 1; }

# The modules' other Pythons (tests/config.yml: >=3.9): syntax only, with
# pyenv's interpreters (the unit tests run under them in `make test`).
pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
for v in 3.9 3.12; do
  bins=("$pyenv_root"/versions/"$v".*/bin)
  if [[ ! -x ${bins[-1]}/python$v ]]; then
    echo "no Python $v under $pyenv_root/versions for the compile check" >&2; exit 1
  fi
  ( cd "$tree" && PATH=${bins[-1]}:$PATH \
    ansible-test sanity --local --test compile --python "$v" --color no 2>&1 | grep -v "^WARNING: Location" ) || {
    echo "ansible-test sanity --test compile --python $v failed" >&2; exit 1; }
done

echo "== ansible-lint (production profile)"
ansible-lint --profile production --offline
echo "lint: clean"
