"""`python -m node` is the `sovereign` command (used where the console script is not on PATH)."""

import sys

from node.cli import main

sys.exit(main())
