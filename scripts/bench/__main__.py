"""Entry point: `python3 scripts/bench` (what scripts/bench.sh runs) or,
from scripts/, `python3 -m bench`."""

import os
import sys

if not __package__:
    # Run as a directory: its own folder is sys.path[0]; the package needs
    # its parent there instead.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from bench.cli import main  # noqa: E402

sys.exit(main())
