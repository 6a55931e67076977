"""`python ci/dashboards [--check]` (or `python -m dashboards` with ci/ on the path)."""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as `python ci/dashboards`: import the package from ci/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from dashboards import main
else:
    from . import main

sys.exit(main())
