"""The server under test: our own `rig grpc`, a command that starts any server, or one running.

Three kinds of target:

- **own** (the default): a fresh `rig grpc` per run, as always; it grants
  every control need (flags, restarts, files, security, a fresh store).
- **command** (`--target-cmd 'CMD'`): any server, started per run by a
  command with placeholders: `{port}` (required; a free port the runner
  picked: listen on 127.0.0.1 there), `{dir}` (the run's project directory,
  also the command's working directory: keep the server's data there, so
  each run starts empty and a restart keeps it) and `{args}` (the case's
  `rig grpc` flags: `--buffer 1`, `--tls-cert …`; leave it out and cases that
  need flags or security are skipped). The command is a list of words, split
  as a shell would and run without one (`{args}` a word of its own, becoming
  as many words as there are flags), or a shell command line (`&&`, `|`, `;`,
  redirections, `$VAR`), run with `sh -c`; so is the script of an explicit
  `sh -c '…'`. In a shell command line the runner quotes each value for the
  shell, so placeholders stand bare, outside quotes. The command needs no
  ready file: the runner waits until the port accepts a connection and the
  server answers a health check (`grpc.health.v1`, SERVING) or, without
  health, a server reflection request. It is stopped with SIGTERM to its
  process group (then SIGKILL after 20 s), so wrappers (`sh -c`, `npm start`)
  stop with it.
- **remote** (`--target HOST:PORT`): one server someone else started, shared
  by every run, one run at a time. Nothing about the server can be
  controlled and its store is not empty: runs are judged on what they added
  (runner/shared.py) and archive it afterwards unless `--keep`; cases that
  need more are skipped. With `--target-root DIR` (the server's project root,
  on this machine) cases that place files put them in a folder of their own
  under DIR/rigger-conformance/ and remove it afterwards.

TLS and tokens for command and remote targets come from `--target-ca`,
`--target-cert`/`--target-key` and `--target-token`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import ipaddress
import os
import pathlib
import re
import shlex
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from conformance.targets.capabilities import CONTROL, NAMES, Grants, ServerProfile, kind_of
from testkit.serverproc import RIG, ServerProcess
from testkit.wait import wait_until

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
PLACEHOLDERS = ("{port}", "{dir}", "{args}", "{mutant}")
PLACEHOLDER = re.compile(r"\{(port|dir|args|mutant)\}")
LOG_LINES = 20
# Programs whose `-c` word is a script: values go into it quoted for the shell.
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox"})
SHELL_OPERATORS = frozenset("();<>|&")
# Under --target-root, each run's files go to a folder of their own in here.
FILES_FOLDER = "rigger-conformance"


class TargetError(ValueError):
    """A target that cannot be used as given; the message says why."""


@dataclasses.dataclass(frozen=True)
class ClientSecurity:
    """How clients reach a target we did not configure: its CA, our certificate, a token."""

    ca_file: pathlib.Path | None = None
    cert_file: pathlib.Path | None = None
    key_file: pathlib.Path | None = None
    token: str | None = None

    @property
    def tls(self) -> bool:
        """True when clients connect with TLS."""
        return self.ca_file is not None

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """The runner's own credentials (readiness, probe, discovery), or None for plaintext."""
        if self.ca_file is None:
            return None
        key = self.key_file.read_bytes() if self.key_file else None
        cert = self.cert_file.read_bytes() if self.cert_file else None
        return grpc.ssl_channel_credentials(self.ca_file.read_bytes(), key, cert)

    def check(self) -> None:
        """TargetError for a combination or file that cannot work."""
        if (self.cert_file is None) != (self.key_file is None):
            raise TargetError("--target-cert and --target-key go together")
        if self.cert_file is not None and self.ca_file is None:
            raise TargetError("--target-cert needs --target-ca (client certificates need TLS)")
        for path in (self.ca_file, self.cert_file, self.key_file):
            if path is not None and not path.is_file():
                raise TargetError(f"{path}: no such file")


# --- waiting for a server that writes no ready file ---------------------------------


def free_port() -> int:
    """A port nothing listens on right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(
    address: str, credentials: grpc.ChannelCredentials | None, token: str | None
) -> str | None:
    """None once the server answers health (SERVING) or reflection; else what it said."""
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    channel = (
        grpc.secure_channel(address, credentials)
        if credentials is not None
        else grpc.insecure_channel(address)
    )
    with channel:
        # types-grpcio-health-checking declares HealthStub without its methods.
        health: Any = health_pb2_grpc.HealthStub(channel)
        try:
            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=2, metadata=metadata)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                return f"health: {exc.code().name}: {exc.details()}"
        else:
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return None
            return f"health: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
        reflection: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        try:
            for _ in reflection.ServerReflectionInfo(iter([request]), timeout=2, metadata=metadata):
                return None
        except grpc.RpcError as exc:
            return f"no health service, and reflection: {exc.code().name}: {exc.details()}"
    return "no health service, and reflection answered nothing"


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


# --- a server started by a command ----------------------------------------------------


def _shell_syntax(text: str) -> bool:
    """True when a shell would read more into `text` than words: operators, `$`, backquotes."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:
        return False  # unbalanced quotes: parse() says so
    if any(token and set(token) <= SHELL_OPERATORS for token in tokens):
        return True
    return any(char in "$`" for char, quote in _scan(text) if quote != "'")


def _scan(text: str) -> list[tuple[str, str]]:
    """Each character of a shell script with the quote it is inside ("", "'" or '"')."""
    found: list[tuple[str, str]] = []
    quote = ""
    escaped = False
    for char in text:
        found.append((char, quote))
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote and char == quote:
            quote = ""
        elif not quote and char in "'\"":
            quote = char
    return found


def _quoted_placeholders(script: str) -> list[str]:
    """Placeholders a script puts inside quotes, where a quoted value would break."""
    quotes = [quote for _, quote in _scan(script)]
    return [m.group(0) for m in PLACEHOLDER.finditer(script) if quotes[m.start()]]


@dataclasses.dataclass(frozen=True)
class CommandTemplate:
    """`--target-cmd`: words split like a shell would, or a shell command line for `sh -c`."""

    text: str
    words: tuple[str, ...]
    # Words a shell reads as its script (`sh -c '...'`, or the whole command
    # line): placeholders in them get values quoted for that shell.
    scripts: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str) -> CommandTemplate:
        """Check and split the command; TargetError says what is wrong."""
        if not text.strip():
            raise TargetError("--target-cmd is empty")
        if "{port}" not in text:
            raise TargetError(
                "--target-cmd must contain {port}: the runner picks a free port per run "
                "and the server must listen on 127.0.0.1 there"
            )
        if _shell_syntax(text):
            words, scripts = ("sh", "-c", text), frozenset({2})
        else:
            try:
                words = tuple(shlex.split(text))
            except ValueError as exc:
                raise TargetError(f"--target-cmd: {exc}") from None
            scripts = _script_words(words)
        for index in sorted(scripts):
            quoted = _quoted_placeholders(words[index])
            if quoted:
                raise TargetError(
                    f"--target-cmd: write {quoted[0]} outside quotes in the shell command line: "
                    "the runner quotes its value for the shell"
                )
        if any("{args}" in w and w != "{args}" for i, w in enumerate(words) if i not in scripts):
            raise TargetError(
                "--target-cmd: {args} must be a word of its own (it becomes one word per "
                "flag), or stand in a shell command line (`sh -c '... {args}'`)"
            )
        return cls(text, words, scripts)

    @property
    def takes_flags(self) -> bool:
        """True when `{args}` passes the case's `rig grpc` flags."""
        return any(
            w == "{args}" or (i in self.scripts and "{args}" in w) for i, w in enumerate(self.words)
        )

    @property
    def shell(self) -> bool:
        """True when a shell reads (part of) the command."""
        return bool(self.scripts)

    def with_mutant(self, mutant: str) -> CommandTemplate:
        """The command with `{mutant}` filled (the self-test's mutant servers)."""
        return dataclasses.replace(
            self,
            text=self.text.replace("{mutant}", mutant),
            words=tuple(
                w.replace("{mutant}", shlex.quote(mutant) if i in self.scripts else mutant)
                for i, w in enumerate(self.words)
            ),
        )

    def argv(
        self, port: int, directory: pathlib.Path, args: Sequence[str], cwd: pathlib.Path
    ) -> list[str]:
        """The command for one start: placeholders filled, a relative program made absolute."""
        values = {"port": str(port), "dir": str(directory)}
        quoted = {**{k: shlex.quote(v) for k, v in values.items()}, "args": shlex.join(args)}
        filled: list[str] = []
        for index, word in enumerate(self.words):
            if index in self.scripts:
                filled.append(PLACEHOLDER.sub(lambda m: quoted.get(m.group(1), m.group(0)), word))
            elif word == "{args}":
                filled += args
            else:
                filled.append(PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), word))
        program = filled[0]
        # The command runs in {dir}; `./my-server` means the one where the suite was started.
        if "/" in program and not pathlib.Path(program).is_absolute():
            filled[0] = str((cwd / program).resolve())
        return filled


def _script_words(words: Sequence[str]) -> frozenset[int]:
    """The script word of `sh -c 'script' ...` (or bash, zsh ...; `-ec` too), if any."""
    if not words or pathlib.Path(words[0]).name not in SHELLS:
        return frozenset()
    for index, word in enumerate(words[1:], start=1):
        if re.fullmatch(r"-[a-z]*c[a-z]*", word) and index + 1 < len(words):
            return frozenset({index + 1})
        if not word.startswith("-"):
            break
    return frozenset()


class CommandProcess:
    """A server started by a `--target-cmd`, per run; `start()` waits until it answers."""

    def __init__(
        self,
        template: CommandTemplate,
        root: pathlib.Path,
        *,
        extra_args: tuple[str, ...] = (),
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        tls: bool = False,
    ) -> None:
        self.template = template
        self.root = root
        self.extra_args = extra_args
        self.credentials = credentials
        self.token = token
        self.tls = tls
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "server.log"
        self.cwd = pathlib.Path.cwd()

    def replica_for(self, role_index: int) -> Any:
        """The server every role dials: this one (only `--postgres` has replicas)."""
        return self

    @property
    def address(self) -> str:
        """`127.0.0.1:<port>`: what a client dials."""
        return f"127.0.0.1:{self.port}"

    @property
    def dial(self) -> str:
        """The address to dial: by name with TLS (certificates name localhost)."""
        return f"localhost:{self.port}" if self.tls else self.address

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> CommandProcess:
        """Start on the previous port (a free one the first time); wait until it answers."""
        if not self.port:
            self.port = free_port()
        argv = self.template.argv(self.port, self.root, self.extra_args, self.cwd)
        with self.log_path.open("ab") as log:
            log.write(f"$ {shlex.join(argv)}\n".encode())
            log.flush()
            try:
                self.proc = subprocess.Popen(
                    argv,
                    cwd=self.root,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # Its own process group: stop() reaches the children of wrappers too.
                    start_new_session=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            except OSError as exc:
                raise RuntimeError(f"--target-cmd cannot start {argv[0]}: {exc}") from None
        last = "the port is not open yet"

        def serving() -> bool:
            nonlocal last
            assert self.proc is not None
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"the target command exited with {code} before serving: {self._tail()}"
                )
            if not _port_open(self.port):
                return False
            last = answers(self.dial, self.credentials, self.token) or ""
            return not last

        try:
            wait_until(serving, "the target command to serve", within=timeout, every=0.05)
        except TimeoutError:
            self.stop()
            raise RuntimeError(
                f"the target command did not serve on 127.0.0.1:{self.port} within "
                f"{timeout:.0f} s ({last}): {self._tail()}"
            ) from None
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
        """Signal the command's process group and wait; SIGKILL it if it lingers."""
        if self.proc is None:
            return 0
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = -signal.SIGKILL
        # Whatever the command left behind in its group goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        return code

    def read_log(self) -> str:
        """What the command wrote (stdout and stderr together)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _tail(self) -> str:
        lines = self.read_log().splitlines()[-LOG_LINES:]
        return "\n" + "\n".join(lines) if lines else "(it wrote nothing)"


class RemoteServer:
    """A server someone else runs: nothing to start or stop."""

    def __init__(self, address: str, log_path: pathlib.Path) -> None:
        self._address = address
        host, _, port = address.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.log_path = log_path

    def replica_for(self, role_index: int) -> Any:
        """The server every role dials: this one (only `--postgres` has replicas)."""
        return self

    @property
    def address(self) -> str:
        """HOST:PORT as given."""
        return self._address

    @property
    def dial(self) -> str:
        """HOST:PORT as given."""
        return self._address

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> RemoteServer:
        """Nothing to start."""
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
        """Nothing to stop."""
        return 0

    def read_log(self) -> str:
        """Its log is not ours."""
        return ""


# --- the three targets ------------------------------------------------------------------


def _refusing(reasons: Mapping[str, str]) -> Grants:
    return Grants({k: v for k, v in reasons.items() if kind_of(k) == CONTROL})


ALL_CONTROL = tuple(n for n in NAMES if kind_of(n) == CONTROL)


@dataclasses.dataclass(frozen=True)
class Target:
    """Where runs find their server, and what the runner controls about it."""

    kind: str  # "own", "command", "remote"
    description: str
    command: tuple[str, ...] = RIG  # own
    template: CommandTemplate | None = None  # command
    address: str = ""  # remote
    security: ClientSecurity = ClientSecurity()
    # remote: the server's project root, on this machine (--target-root).
    root: pathlib.Path | None = None
    # remote: leave what the runs created (--keep) instead of archiving it.
    keep: bool = False
    # What starts an own run's server: one ServerProcess, or a stand-in for
    # one such as `replicas.Replicas` (`--postgres`).
    servers: Callable[..., Any] = ServerProcess

    def serving_with(self, servers: Callable[..., Any], description: str) -> Target:
        """This own target, each run's server made by `servers` instead."""
        if self.kind != "own":
            raise TargetError("--postgres starts replicas of its own: it takes no target")
        return dataclasses.replace(self, servers=servers, description=description)

    @property
    def shared(self) -> bool:
        """One server for every run: runs go one at a time and see each other's events."""
        return self.kind == "remote"

    def grants(self, profile: ServerProfile | None = None) -> Grants:
        """Which control needs this target meets; the others with the reason.

        A shared server's runs count sequences from its head only when the
        `profile` found that a subscription names it.
        """
        if self.kind == "own":
            return Grants({})
        if self.kind == "command":
            assert self.template is not None
            refused = {}
            if not self.template.takes_flags:
                why = "--target-cmd has no {args} placeholder to pass the case's server flags"
                refused = {"server_flags": why, "security": why}
            elif self.security.tls or self.security.token:
                why = "--target-ca/--target-token set the clients' credentials for every run"
                refused = {"security": why}
            return _refusing(refused)
        why = f"--target {self.address}: the runner does not control this server"
        refused = {
            "restart": f"{why}, so it cannot stop or start it",
            "server_flags": f"{why}, so it cannot pass it flags",
            "server_dir": f"{why}, so it places no files beside its project root",
            "security": f"{why}, so it cannot configure its TLS and tokens",
            "fresh_server": f"{why}; its store holds others' tasks and events",
        }
        if self.root is None:
            refused["files"] = (
                f"--target {self.address}: the server's project root is unknown; "
                "--target-root DIR names it (on this machine)"
            )
        if profile is not None and not profile.head_sequence:
            refused["log_head"] = (
                f"--target {self.address}: a subscription's headers name no "
                "rigger-head-sequence, so the runner cannot count sequences from the log's head"
            )
        if not is_loopback(self.address):
            refused["loopback"] = f"--target {self.address} is not on this machine's loopback"
        return _refusing(refused)

    def server(
        self,
        root: pathlib.Path,
        *,
        db: pathlib.Path,
        extra_args: tuple[str, ...],
        credentials: grpc.ChannelCredentials | None,
        token: str | None,
    ) -> Any:
        """A handle on this run's server (not started yet)."""
        if self.kind == "own":
            return self.servers(
                root,
                db=db,
                extra_args=extra_args,
                command=self.command,
                credentials=credentials,
                token=token,
            )
        if self.kind == "command":
            assert self.template is not None
            if credentials is None and token is None:
                credentials = self.security.channel_credentials()
                token = self.security.token
            return CommandProcess(
                self.template,
                root,
                extra_args=extra_args,
                credentials=credentials,
                token=token,
                tls=credentials is not None,
            )
        return RemoteServer(self.address, root / "server.log")


def own(command: tuple[str, ...] = RIG) -> Target:
    """Our own `rig grpc` (or a wrapper of it), started per run."""
    return Target("own", "rig grpc, started per run", command=command)


def command(text: str, security: ClientSecurity = ClientSecurity()) -> Target:
    """`--target-cmd`: TargetError when the command cannot work."""
    security.check()
    template = CommandTemplate.parse(text)
    return Target("command", f"--target-cmd {text!r}", template=template, security=security)


def remote(
    address: str,
    security: ClientSecurity = ClientSecurity(),
    *,
    root: pathlib.Path | None = None,
    keep: bool = False,
) -> Target:
    """`--target HOST:PORT`: TargetError when the address is malformed or the root missing."""
    security.check()
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TargetError(f"--target {address!r}: expected HOST:PORT, e.g. 127.0.0.1:50051")
    if root is not None:
        if not root.is_dir():
            raise TargetError(f"--target-root {root}: no such directory")
        root = root.resolve()
    return Target(
        "remote", f"--target {address}", address=address, security=security, root=root, keep=keep
    )


def is_loopback(address: str) -> bool:
    """True when HOST of HOST:PORT is this machine (localhost or a loopback IP)."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- the command line ------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose the server under test (and, for --profile, its schema)."""
    group = parser.add_argument_group(
        "the server under test (default: `rig grpc` from this checkout, a fresh one per run)"
    )
    where = group.add_mutually_exclusive_group()
    where.add_argument(
        "--target",
        metavar="HOST:PORT",
        help="a rigger.v1 server already running: every run uses it, one at a time; "
        "cases that need to control the server, or an empty one, are skipped",
    )
    where.add_argument(
        "--target-cmd",
        metavar="'CMD'",
        help="start a server per run with this command: {port} (required: listen on "
        "127.0.0.1 there), {dir} (its working directory: keep its data there), {args} "
        "(the case's `rig grpc` flags); with --self-test, {mutant} too",
    )
    group.add_argument(
        "--target-ca", type=pathlib.Path, metavar="FILE", help="the target's CA (TLS)"
    )
    group.add_argument(
        "--target-cert", type=pathlib.Path, metavar="FILE", help="client certificate (mTLS)"
    )
    group.add_argument(
        "--target-key", type=pathlib.Path, metavar="FILE", help="the client certificate's key"
    )
    token = group.add_mutually_exclusive_group()
    token.add_argument("--target-token", metavar="TOKEN", help="sent as `authorization: Bearer`")
    token.add_argument(
        "--target-token-file", type=pathlib.Path, metavar="FILE", help="the token's first line"
    )
    group.add_argument(
        "--target-root",
        type=pathlib.Path,
        metavar="DIR",
        help="with --target: the server's project root, on this machine; cases that place "
        f"PRD files put them in a folder of their own under DIR/{FILES_FOLDER}/ and remove "
        "it afterwards (default: none, and those cases are skipped)",
    )
    group.add_argument(
        "--keep",
        action="store_true",
        help="with --target: leave the tasks (and files) the runs created; by default each "
        "run archives its tasks (DeleteTask) and removes its files when it ends",
    )
    group.add_argument(
        "--profile",
        metavar="NAME|FILE",
        help="the server's schema when reflection cannot tell (or to override it): "
        "v1.0 (the first release), head (this checkout), or a buf image (buf build -o FILE)",
    )


def from_args(args: argparse.Namespace) -> Target:
    """The target the options describe; TargetError when they do not fit together."""
    token = args.target_token
    if args.target_token_file is not None:
        lines = args.target_token_file.read_text(encoding="utf-8").splitlines()
        token = lines[0].strip() if lines else ""
        if not token:
            raise TargetError(f"{args.target_token_file}: no token on its first line")
    security = ClientSecurity(args.target_ca, args.target_cert, args.target_key, token)
    if not args.target and (args.target_root is not None or args.keep):
        raise TargetError("--target-root and --keep go with --target (a server already running)")
    if args.target:
        if args.server_args:
            raise TargetError("--server-args: the runner does not start a --target")
        if args.self_test:
            raise TargetError("--self-test starts its mutant servers: use --target-cmd")
        return remote(args.target, security, root=args.target_root, keep=args.keep)
    if args.target_cmd:
        chosen = command(args.target_cmd, security)
        assert chosen.template is not None
        if args.server_args and not chosen.template.takes_flags:
            raise TargetError("--server-args needs {args} in --target-cmd")
        if args.self_test and "{mutant}" not in args.target_cmd:
            raise TargetError("--self-test --target-cmd needs {mutant} in the command")
        if not args.self_test and "{mutant}" in args.target_cmd:
            raise TargetError("{mutant} is only for --self-test")
        return chosen
    if security != ClientSecurity():
        raise TargetError("--target-ca, -cert, -key and -token need --target or --target-cmd")
    if importlib.util.find_spec("rigger_server") is None:
        raise TargetError(
            "no server to test: without --target or --target-cmd the suite starts Rigger's own "
            "`rig grpc`, which is not installed here. Point it at yours: --target HOST:PORT "
            "(a server already running) or --target-cmd 'CMD' (one started per run)"
        )
    return own()
