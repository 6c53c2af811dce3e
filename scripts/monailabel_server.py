"""Serve the bundle to annotators with MONAI Label's stock ``monaibundle`` app, on 127.0.0.1, fully offline.

See ``semcl_tools.monailabel`` (``--help`` lists the options). Any Python >= 3.10 runs it (the tools need only the
standard library; the checkout is put on the path, so no installed package is needed).

Usage:
    python scripts/monailabel_server.py [--bundle DIR] [--weights DIR] [--studies DIR] [--app-dir DIR] [--port 8000]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from semcl_tools.monailabel import main  # noqa: E402  (after the checkout is on the path)

if __name__ == "__main__":
    sys.exit(main())
