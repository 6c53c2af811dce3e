"""Export the bundle as a model-zoo artifact: ``<out>/<bundle>_v<version>.zip``, self-contained.

See ``semcl_tools.zoo_export`` (``--help`` lists the options).

Usage:
    python scripts/export_bundle.py --url https://example.org/releases/v0.1.0 [--out dist] [--weights-from DIR]
        [--dataset_dir DIR] [--pretrain-epochs 20] [--train-epochs 120]
"""

import sys

from semcl_tools.zoo_export import main

if __name__ == "__main__":
    sys.exit(main())
