"""The main job: the whole pipeline on the embedded phantom data, at a small CPU budget.

Stages (each reuses what an earlier run already finished, so rerunning is safe):
    1. data: write the phantom dataset (MSD layout + low-label datalist + preview PNG).

Usage:
    python scripts/demo.py [--data-dir data/phantoms] [--num 24] [--size 96 96 96]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from semcl_components.data.phantoms import format_summary, write_phantom_dataset

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data" / "phantoms", help="phantom dataset folder")
    parser.add_argument("--num", type=int, default=24, help="number of phantom subjects")
    parser.add_argument("--size", type=int, nargs=3, default=(96, 96, 96), metavar=("X", "Y", "Z"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    print(f"[demo] 1/1 data: writing phantoms to {args.data_dir}", flush=True)
    summary = write_phantom_dataset(args.data_dir, num=args.num, seed=args.seed, size=tuple(args.size), preview=True)
    print(format_summary(summary))
    print(f"[demo] done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
