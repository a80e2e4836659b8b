"""What the tests, the benches and the conformance suite share to put a server under test.

Start a `rig grpc` (or any command standing in for it) and wait until it
serves (`serverproc`), throwaway PostgreSQL clusters (`pgcluster`) and
replicas on them (`replicas`), certificates (`pki`), and one way to wait for
a condition with a deadline (`wait`).

It knows the server only as a process and a gRPC address: it imports no
module of the server, the tests, the benches or the suite, so the suite can
ship it beside itself (conformance/README.md, "Modules").
"""
