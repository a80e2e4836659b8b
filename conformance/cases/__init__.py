"""The cases: YAML files beside this module, checked against case.schema.json.

The case language (model.py), its loader (load.py), the JSON Schemas and
their generator (schema.py), YAML values as rigger.v1 messages (messages.py),
captured values (bindings.py) and the suite's coverage of the contract
(coverage.py). `from conformance import cases as c` gives the model under
one name; the loader is `conformance.cases.load` (it is
not imported here, so `python -m conformance.cases.schema` runs cleanly).
"""

from conformance.cases.model import (
    CASES_DIR,
    CODES,
    DEFAULT_QUIET_MS,
    DEFAULT_ROLE,
    DEFAULT_TOKEN,
    DEFAULT_WITHIN_MS,
    Call,
    Cancel,
    Case,
    CaseError,
    CloseSend,
    Connect,
    Discover,
    Expect,
    ExpectEnd,
    ExpectEvents,
    ExpectQuiet,
    ExpectSame,
    FileSpec,
    Open,
    Parallel,
    Repeat,
    Security,
    Send,
    Server,
    Sleep,
    Step,
    walk,
)

__all__ = [
    "CASES_DIR",
    "CODES",
    "DEFAULT_QUIET_MS",
    "DEFAULT_ROLE",
    "DEFAULT_TOKEN",
    "DEFAULT_WITHIN_MS",
    "Call",
    "Cancel",
    "Case",
    "CaseError",
    "CloseSend",
    "Connect",
    "Discover",
    "Expect",
    "ExpectEnd",
    "ExpectEvents",
    "ExpectQuiet",
    "ExpectSame",
    "FileSpec",
    "Open",
    "Parallel",
    "Repeat",
    "Security",
    "Send",
    "Server",
    "Sleep",
    "Step",
    "walk",
]
