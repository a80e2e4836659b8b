"""The per-language conformance executors: thin programs that carry out the runner's instructions.

Each speaks the rigger.conformance.v1 harness protocol on stdin/stdout and
never judges (see conformance/README.md, "Adding a language"). They live here,
not in the clients, so nothing users install carries harness code: `python/`
is a package of this one, `go/` its own Go module, `ts/` its own npm package.
"""
