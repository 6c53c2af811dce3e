"""The cost of one fine-tuning epoch of a benchmark size against a reference size's, the two timed in turn on this
machine (the difficulty criteria's cost; ``semcl_benchmark.cost_ratio``, ``--help`` lists the options); with
``levers`` first, benchmark v3's speed levers (channels-last, threads per run, validation interval) against v2's
settings, in one sitting (``semcl_benchmark.cost_levers``, ``levers --help``).

Usage:
    python scripts/benchmark_cost_ratio.py [--size difficulty] [--reference v1] [--epochs 200] [--rounds 3]
    python scripts/benchmark_cost_ratio.py levers [--size v3] [--rounds 3]
"""

import sys

from semcl_benchmark.cost_ratio import main

if __name__ == "__main__":
    sys.exit(main())
