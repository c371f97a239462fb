"""Benchmarks: our engine against a reference tool on the same input, in one run.

Each benchmark prints both times and their ratio (ours / reference). Ratios,
not bare seconds, are what to compare across machines: this host is noisy.
"""

import sys
from pathlib import Path

# `python -m benchmarks` (make bench) runs outside pytest, which would put the
# collections path on sys.path: do it here, as tests/guests does.
_COLLECTIONS = Path(__file__).resolve().parents[1] / ".collections"
if _COLLECTIONS.is_dir() and str(_COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(_COLLECTIONS))
