"""The main job: one seed of the low-label benchmark on the embedded phantom data, both arms side by side.

See ``semcl_benchmark.demo`` (``--help`` lists the options).

Usage:
    python scripts/demo.py [--workdir runs/demo] [--seed 0] [--arm semcl_exact] [--setting finetune_2]
"""

import os
import sys

from semcl_benchmark.demo import main

if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
