"""Make the example service importable as ``service`` (a user's project would not need this)."""

import sys
from pathlib import Path

EXAMPLES = str(Path(__file__).resolve().parent.parent)
if EXAMPLES not in sys.path:
    sys.path.insert(0, EXAMPLES)
