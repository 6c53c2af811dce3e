"""Serve the bundle to annotators with MONAI Label's stock ``monaibundle`` app, on 127.0.0.1, fully offline.

See ``semcl_tools.monailabel`` (``--help`` lists the options).

Usage:
    python scripts/monailabel_server.py [--bundle DIR] [--weights DIR] [--studies DIR] [--app-dir DIR] [--port 8000]
"""

import sys

from semcl_tools.monailabel import main

if __name__ == "__main__":
    sys.exit(main())
