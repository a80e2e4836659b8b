"""A run's stage: its directory, its server and a connected executor per client.

Setting up writes the case's files and certificates and starts the server;
`connect_all` points every client at it (with the case's CA, certificate
and token); tearing down cancels what is still open and gives the executors
back to the pool. The `server:`, `connect` and `discover` steps act here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import secrets
import shutil
from collections.abc import Sequence
from typing import Any

import grpc
from rigger.conformance.v1 import harness_pb2 as hp
from rigger.v1 import rigger_pb2 as pb

from conformance import cases as c
from conformance.cases import messages
from conformance.cases.bindings import Bindings
from conformance.executors.process import ExecutorDied, ExecutorPool, ExecutorProcess
from conformance.runner import discovery, shared
from conformance.runner.steps import Scope, StepFailed, fail, for_each
from conformance.suite.plan import Run
from conformance.targets.target import FILES_FOLDER, Target
from testkit.pki import RunSecurity

# How long the runner waits for an executor beyond the call's own deadline.
ANSWER_SLACK_S = 15.0
CLEANUP_WAIT_S = 3.0
SERVER_LOG_LINES = 15


def write_files(
    project: pathlib.Path, files: Sequence[c.FileSpec], sandbox: pathlib.Path | None = None
) -> None:
    """Create a case's files. Paths may lead out of the project into the run's own directory.

    Loading the case already refused anything leading further (cases.py); this
    checks again against the files as they are. `sandbox` (default: the
    project's parent, the run's directory) is where every path must stay.
    """
    sandbox = (sandbox or project.parent).resolve()
    for spec in files:
        target = project / spec.path
        if spec.symlink is not None:
            resolved = (target.parent.resolve(strict=False) / spec.symlink).resolve(strict=False)
        else:
            resolved = target.resolve(strict=False)
        if not resolved.is_relative_to(sandbox):
            raise ValueError(f"files: {spec.path!r} leads outside the run's directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        if spec.directory:
            target.mkdir(exist_ok=True)
        elif spec.fifo:
            os.mkfifo(target)
        elif spec.symlink is not None:
            target.symlink_to(spec.symlink)
        elif spec.hex is not None:
            target.write_bytes(bytes.fromhex(spec.hex))
        else:
            target.write_text(spec.text or "", encoding="utf-8")


class Stage:
    """One run's server and clients."""

    def __init__(
        self,
        run: Run,
        pool: ExecutorPool,
        workdir: pathlib.Path,
        target: Target,
        server_args: tuple[str, ...] = (),
    ) -> None:
        self.run = run
        self.case = run.case
        self.pool = pool
        self.workdir = workdir
        self.project = workdir / "project"
        self.target = target
        # Flags every run's server gets before the case's own, e.g. --workers 2.
        self.server_args = server_args
        self.server: Any = None
        self.clients: dict[str, tuple[str, str, ExecutorProcess]] = {}  # instance → role, lang
        self.pki: RunSecurity | None = None
        # Instances connected with a certificate the server must refuse: the
        # messages they see are made up by their own TLS stack.
        self.refused: set[str] = set()
        # A name no other run has: the folder of its files under --target-root.
        self.run_name = f"run-{secrets.token_hex(4)}"
        # Where the case's files go, and how requests name that folder from the
        # server's project root (`${files}`): the root itself on a server the
        # runner starts, a folder of the run's own under --target-root.
        self.files_dir = self.project
        self.files_path = "."
        if target.shared and target.root is not None:
            self.files_dir = target.root / FILES_FOLDER / self.run_name
            self.files_path = f"{FILES_FOLDER}/{self.run_name}"
        # A shared server (--target): the runner's own connection to it and what
        # it held when the run began (runner/shared.py).
        self.shared: shared.SharedServer | None = None
        self.baseline = shared.Baseline()
        self.shifting = shared.Shifting(0)
        self.final_head = 0
        # Tasks the run left behind on a shared server and archived (or kept, --keep).
        self.tidied = 0

    def bindings(self) -> Bindings:
        """The names every case may use: `${root}`, `${files}`, `${run}` and `${address}`.

        On a shared server, literal sequences count from the log's head when the run began.
        """
        assert self.server is not None
        return Bindings(
            {
                "root": str(self.files_dir.resolve()),
                "files": self.files_path,
                "run": self.run_name,
                "address": self.server.address,
            },
            literals=self.shifting if self.baseline.head else None,
        )

    @property
    def sequences(self) -> tuple[int, int]:
        """The sequences the run could meet: from its base to the largest it saw or sent."""
        return self.baseline.head, max(self.final_head, self.shifting.largest)

    def replacements(self) -> dict[str, str]:
        """What a transcript says instead of this run's own paths and name."""
        found = {
            str(self.files_dir.resolve()): "<root>",
            str(self.project.resolve()): "<root>",
            str(self.workdir.resolve()): "<rundir>",
        }
        if self.files_path != ".":
            found[self.files_path] = "."
        found[self.run_name] = "<run>"
        return found

    async def setup(self) -> None:
        """Write the case's files and certificates, start the server, connect every client."""
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.project.mkdir(parents=True)
        if self.files_dir == self.project:
            write_files(self.project, self.case.files)
        elif self.case.files:
            # Under --target-root: only in the run's folder (cases whose files lie
            # beside the root need `server_dir`, which a shared server never grants).
            self.files_dir.mkdir(parents=True)
            write_files(self.files_dir, self.case.files, sandbox=self.files_dir)
        security_args: tuple[str, ...] = ()
        credentials = None
        token = None
        if self.case.security is not None:
            security = self.case.security
            self.pki = RunSecurity.create(self.workdir / "pki", security.tls, security.tokens)
            security_args = self.pki.server_args
            credentials = self.pki.channel_credentials()
            token = security.tokens[0] if security.tokens else None
        self.server = self.target.server(
            self.project,
            db=self.workdir / "db" / "tasks.db",
            extra_args=(*self.server_args, *self.case.server_args, *security_args),
            credentials=credentials,
            token=token,
        )
        self.server.log_path = self.workdir / "server.log"
        await asyncio.to_thread(self.server.start)
        if self.target.shared:
            self.shared = shared.SharedServer(self.server.dial, self.target.security)
            try:
                self.baseline = await asyncio.to_thread(self.shared.begin, self.case)
                self.shifting = shared.Shifting(self.baseline.head)
            except shared.SharedServerError as exc:
                raise StepFailed(f"the shared server's baseline: {exc}") from None
        for instance, role, language in self.run.instances():
            executor = await self.pool.acquire(language)
            self.clients[instance] = (role, language, executor)
        await self.connect_all()

    async def as_the_run_asks(self, request: Any) -> Any:
        """A ListTasks request as it is sent: on a shared server, narrowed to the run's tasks."""
        if self.shared is None or not isinstance(request, pb.ListTasksRequest):
            return request
        before = self.baseline.counts.get(shared.filter_of(request))
        if before is None:
            return request
        try:
            now = await asyncio.to_thread(self.shared.count, shared.filter_of(request))
        except shared.SharedServerError as exc:
            raise StepFailed(
                f"counting the shared server's tasks before ListTasks: {exc}"
            ) from None
        return shared.window(self.baseline, request, now)

    def seen_by_the_run(self, request: Any, response: Any) -> tuple[Any, str]:
        """A ListTasks answer as the run judges it: on a shared server, only the run's tasks."""
        if self.shared is None or not isinstance(request, pb.ListTasksRequest):
            return response, ""
        return shared.view(self.baseline, request, response)

    async def connect_all(self) -> None:
        """(Re)connect every client with the default token and a valid certificate."""
        self.refused.clear()
        await asyncio.gather(
            *(
                self.connect_one(i, e, c.DEFAULT_TOKEN, "valid")
                for i, (_, _, e) in self.clients.items()
            )
        )

    async def connect_one(
        self, instance: str, executor: ExecutorProcess, token: str | None, certificate: str
    ) -> None:
        """Connect one executor: plaintext, or with the case's CA, certificate and token."""
        server = self.server_for(instance)
        connect = hp.Connect(address=server.address)
        security = self.case.security
        theirs = self.target.security
        if security is None and (theirs.tls or theirs.token):
            # A target configured outside the runner: its CA, our certificate, its token.
            connect.address = self.server.dial
            connect.ca_file = str(theirs.ca_file or "")
            connect.cert_file = str(theirs.cert_file or "")
            connect.key_file = str(theirs.key_file or "")
            # Connect steps need a case's `security:`, so this is always the default token.
            connect.token = theirs.token or ""
        if security is not None:
            assert self.pki is not None
            if token == c.DEFAULT_TOKEN:
                token = security.tokens[0] if security.tokens else None
            connect.token = token or ""
            if security.tls != "none":
                # The server certificate names localhost, not the address's IP.
                connect.address = f"localhost:{server.port}"
                connect.ca_file = str(self.pki.ca.cert)
                client_pem = {"valid": self.pki.client, "foreign": self.pki.foreign}.get(
                    certificate
                )
                if security.tls == "mutual" and client_pem is not None:
                    connect.cert_file = str(client_pem.cert)
                    connect.key_file = str(client_pem.key)
        if certificate == "valid":
            self.refused.discard(instance)
        else:
            self.refused.add(instance)
        answer = await executor.request(ANSWER_SLACK_S, connect=connect)
        if answer.WhichOneof("result") != "done":
            raise StepFailed(f"{instance}: Connect answered {answer}".strip())

    def server_for(self, instance: str) -> Any:
        """The server a client dials: the run's one server, or its role's replica."""
        assert self.server is not None
        role = self.clients[instance][0]
        return self.server.replica_for(self.case.roles.index(role))

    def instances(self, role: str) -> list[tuple[str, str, ExecutorProcess]]:
        """(instance, language, executor) of every client playing `role`."""
        return [(i, lang, e) for i, (r, lang, e) in self.clients.items() if r == role]

    async def connect(self, step: c.Connect, scope: Scope) -> None:
        """The `connect` step: reconnect a role's clients with another token or certificate."""

        async def one(target: tuple[str, str, ExecutorProcess]) -> None:
            instance, _, executor = target
            await self.connect_one(instance, executor, step.token, step.certificate)

        await for_each(self.instances(step.client), one)

    async def server_step(self, step: c.Server, scope: Scope) -> None:
        """The `server` step: stop, start or restart the server, then reconnect."""
        assert self.server is not None
        # With replicas, the one serving the case's last role.
        target = self.server.replica_for(len(self.case.roles) - 1)
        if step.action in ("stop", "restart"):
            await asyncio.to_thread(target.stop)
        if step.action in ("start", "restart"):
            await asyncio.to_thread(target.start)
            await self.connect_all()

    async def discover(self, step: c.Discover, scope: Scope) -> None:
        """The `discover` step: reflection and health, checked by the runner itself."""
        # The runner's own calls: reflection and health are the server's, not a client's.
        assert self.server is not None
        credentials = (
            self.pki.channel_credentials()
            if self.pki is not None
            else self.target.security.channel_credentials()
        )
        problems: list[str] = []
        for host in step.hosts:
            problems += await asyncio.to_thread(
                discovery.check,
                discovery.target(host, self.server.port),
                credentials,
                messages.SERVICE,
                step.services,
                step.health,
            )
        fail(step, "runner", problems)

    async def teardown(self, handles: Sequence[Any]) -> list[str]:
        """Cancel the streams still open (StreamHandles), return the executors, stop the server.

        An executor whose streams do not end goes back as unhealthy: the pool
        replaces it. On a shared server, then archive the run's tasks and
        remove its files (unless --keep); what went wrong there is returned.
        """
        healthy = {id(e): True for _, _, e in self.clients.values()}
        open_ = [h for h in handles if h.state.end is None and not h.state.errors]
        for handle in open_:
            with contextlib.suppress(ExecutorDied):
                await handle.executor.request(
                    ANSWER_SLACK_S, stream_cancel=hp.StreamCancel(stream=handle.state.name)
                )
        for handle in open_:
            if not await handle.state.wait_for(handle.finished, CLEANUP_WAIT_S):
                healthy[id(handle.executor)] = False
        for _, _, executor in self.clients.values():
            self.pool.release(executor, healthy=healthy[id(executor)])
        self.clients.clear()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.server.stop)
        return await self._tidy()

    async def _tidy(self) -> list[str]:
        """A shared server: archive the run's tasks and remove its files, unless --keep."""
        problems: list[str] = []
        if self.shared is not None:
            try:
                self.final_head = await asyncio.to_thread(self.shared.head)
                self.tidied = await asyncio.to_thread(
                    self.shared.tidy, self.baseline, keep=self.target.keep
                )
            except (shared.SharedServerError, grpc.RpcError) as exc:
                problems.append(f"tidying the shared server: {exc}")
            finally:
                self.shared.close()
                self.shared = None
        if self.files_dir != self.project and not self.target.keep:
            shutil.rmtree(self.files_dir, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.files_dir.parent.rmdir()  # the last run's folder: leave no trace
        return problems

    def server_log(self) -> str:
        """The end of the server's log, when it complains: ERROR, WARNING, a traceback."""
        # Only a log that complains helps explain a failure; INFO lines are noise.
        if self.server is None:
            return ""
        text = self.server.read_log()
        if not any(marker in text for marker in ("ERROR", "WARNING", "Traceback")):
            return ""
        return "\n".join(text.splitlines()[-SERVER_LOG_LINES:])
