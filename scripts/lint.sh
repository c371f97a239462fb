#!/usr/bin/env bash
# make lint: ruff, ansible-test sanity (local, Python 3.11, no containers), ansible-lint (production).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/.venv/bin:$PATH

echo "== ruff"
ruff check .

# ansible-test must run from inside an ansible_collections/<ns>/<name> tree;
# lint a copy of exactly the files git would ship (tracked + new, not ignored).
echo "== ansible-test sanity"
# LINT_BUILD lets parallel lint runs use separate copies.
build=${LINT_BUILD:-.build/lint}
tree=$build/ansible_collections/kvmigrate/v2v
rm -rf "$build"
mkdir -p "$tree"
git ls-files -z --cached --others --exclude-standard | rsync -a --from0 --files-from=- ./ "$tree/"
( cd "$tree" && git init -q && git add -A && \
  ansible-test sanity --local --python 3.11 --color no 2>&1 | grep -v "^WARNING: Location" ) || {
  echo "ansible-test sanity failed" >&2; exit 1; }

echo "== ansible-lint (production profile)"
ansible-lint --profile production --offline
echo "lint: clean"
