#!/usr/bin/env bash
# Type check plugins/module_utils/ with mypy, for the modules' oldest Python (3.9).
# Configuration: pyproject.toml [tool.mypy]. Extra arguments go to mypy, e.g.
#   scripts/typecheck.sh --disallow-any-generics
# Run alone, or as part of `make lint` (scripts/lint.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/.venv/bin:$PATH

# mypy names the modules ansible_collections.kvmigrate.v2v.* (how the modules
# import each other) only when it reads them through the .collections link.
prefix=.collections/ansible_collections/kvmigrate/v2v
if [[ ! -d $prefix/plugins/module_utils ]]; then
  echo "typecheck: $prefix is missing: run make setup" >&2
  exit 1
fi
# Report paths as the checkout's own (plugins/...), not through the link.
mypy "$@" "$prefix/plugins/module_utils" | sed "s|^$prefix/||"
