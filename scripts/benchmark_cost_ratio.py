"""The cost of one fine-tuning epoch of a benchmark size against a reference size's, the two timed in turn on this
machine (the difficulty criteria's cost; ``semcl_benchmark.cost_ratio``, ``--help`` lists the options).

Usage:
    python scripts/benchmark_cost_ratio.py [--size difficulty] [--reference v1] [--epochs 200] [--rounds 3]
"""

import sys

from semcl_benchmark.cost_ratio import main

if __name__ == "__main__":
    sys.exit(main())
