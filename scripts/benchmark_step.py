"""Micro-benchmark: cost of one contrastive training step against one plain segmentation step, on CPU.

See ``semcl_benchmark.step`` (``--help`` lists the options).

Usage:
    python scripts/benchmark_step.py [--size 48] [--views 8] [--repeats 5] [--warmup 2] [--threads 2]
                                     [--init-filters 16] [--object-crop N] [--out runs/benchmarks/step_benchmark.json]
"""

import sys

from semcl_benchmark.step import main

if __name__ == "__main__":
    sys.exit(main())
