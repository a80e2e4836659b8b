"""`python -m conformance`: the suite's command line (conformance/cli.py)."""

import sys

from conformance.cli import main

sys.exit(main())
