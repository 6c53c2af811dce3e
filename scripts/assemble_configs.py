"""Generate the bundle's configs/pretrain.yaml, train.yaml and inference.yaml from its config_parts/.

See ``semcl_tools.bundle_configs``: edit the parts, then run this; ``--check`` writes nothing and exits 1 naming every
config that is out of date.

Usage:
    python scripts/assemble_configs.py [--check]
"""

import sys

from semcl_tools.bundle_configs import main

if __name__ == "__main__":
    sys.exit(main())
