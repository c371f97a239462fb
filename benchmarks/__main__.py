"""make bench: run every benchmark in turn."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ["inspect_vs_virt_inspector", "convert_vs_virt_v2v", "p2v_tunnel", "fleet"]


def main() -> int:
    names = sys.argv[1:] or BENCHMARKS
    for name in names:
        importlib.import_module(f"benchmarks.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
