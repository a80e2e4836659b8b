"""`python -m conformance.executors.python`: run the Python executor on stdin/stdout."""

from __future__ import annotations

import sys

from conformance.executors.python.executor import main

sys.exit(main())
