"""Low-label benchmark through the bundle: plan, run (resumable) and report. See ``semcl_benchmark.cli``.

Usage:
    python scripts/benchmark.py [--quick | --full | --size NAME] [--protocol FILE ...] [--report-only] ...
"""

import sys

from semcl_benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main())
