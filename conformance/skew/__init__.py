"""Version skew: sidecars built for the first release against today's server, and
today's clients, sidecars and `rig watch` against servers users ran before this release cycle.

    python -m conformance.skew              # all three halves (what `nox -s skew` runs)
    python -m conformance.skew --prepare    # only generate the old clients and build
    python -m conformance.skew --half old-clients   # or old-server, or sidecars

**Old clients, HEAD server.** The three clients are generated from the
released contract image (proto/released/rigger-v1.0.0.binpb) into
build/skew/v1.0/gen/ (never shipped, never committed: regenerated every
time), and each executor is built against that code instead of the
committed clients/*/gen:

- Python: the executor as is, with the old `rigger.v1` first on PYTHONPATH
  (`rigger` is a namespace package, so the old modules shadow the new).
- Go: the executor's module built with `-modfile`, whose `replace` points at
  a copy of clients/go holding the old generated code and the helper the
  executor uses (`rigger.Dial`, dial.go: it touches no generated code; the
  resuming watcher does, so it is left out).
- TypeScript: a copy of the built executor and client, with the client's
  compiled rigger_pb.js replaced by the old one.

The executors look methods and messages up in their generated code at run
time, so the same source serves both. The capability machinery
(conformance/targets/capabilities.py) runs every case the old code can express: the
clients' schema is the v1.0 one, so cases that use `sequence`, `version`,
batches, `after_sequence`, `expected_version` or a title update are skipped.

**HEAD clients, old server.** The server is the newest `v*` tag, or else the
commit named in proto/released/SERVER_REF. Its tree is exported
(`git archive`) into build/skew/server-<commit>/src and installed into a
venv beside it; the suite then starts it per run with `--target-cmd` (it
writes no ready file) and runs every case its reflection says it supports.
A shallow clone is deepened (`git fetch --unshallow`, then the commit
itself); if the commit still cannot be had, this half is reported SKIPPED,
loudly, and the other half still runs.

Both halves run each language alone (`--alone`): the cross-language mixes
test the clients against each other, not against another version.

**The sidecars and `rig watch`, old servers** (sidecars.py). The three
sidecars of this checkout and `rig watch` read SubscribeToTaskEventBatches
and fall back to SubscribeToTaskEvents on a server that answers
UNIMPLEMENTED. This half proves both against real servers built the same
way: the old server above (which has the batched stream: no fallback
expected) and the server of the last commit before the contract gained
SubscribeToTaskEventBatches (found with `git log -S`; the fallback expected,
and said on stderr). Each replays the tasks added before it started and
prints those added after, every line byte for byte as expected, in order, once.
"""
