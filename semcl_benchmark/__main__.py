"""``python -m semcl_benchmark``: the benchmark's command line (the same as ``scripts/benchmark.py``)."""

import sys

from .cli import main

sys.exit(main())
