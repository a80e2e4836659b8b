"""Throwaway certificates, made at run (and test) time, written as files.

`trustme` makes the certificates: a CA, ECDSA keys, certificates valid for
server and client use, with the subject alternative names a loopback server
needs. This module only puts them where `rig grpc --tls-*` and clients read
them (PEM files).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence

import grpc
import trustme

# What a loopback server's certificate must name: clients dial localhost.
SERVER_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclasses.dataclass(frozen=True)
class Pem:
    """A certificate and its key, as files."""

    cert: pathlib.Path
    key: pathlib.Path


class Authority:
    """A CA whose certificate, and every certificate it issues, are written into `directory`."""

    def __init__(self, directory: pathlib.Path, name: str = "Rigger Test CA") -> None:
        self.directory = directory
        self._ca = trustme.CA(organization_unit_name=name)
        stem = name.replace(" ", "-").lower()
        cert = directory / f"{stem}.crt"
        key = directory / f"{stem}.key"
        self._ca.cert_pem.write_to_path(str(cert))
        self._ca.private_key_pem.write_to_path(str(key))
        self.pem = Pem(cert, key)

    def issue(self, stem: str, *, server: bool) -> Pem:
        """A certificate for a loopback server, or for a client named `stem`."""
        # A client certificate still needs a subject alternative name: some
        # TLS stacks refuse an empty one.
        names: Sequence[str] = SERVER_NAMES if server else (f"{stem}.client.test",)
        leaf = self._ca.issue_cert(*names, common_name="localhost" if server else stem)
        pem = Pem(self.directory / f"{stem}.crt", self.directory / f"{stem}.key")
        leaf.cert_chain_pems[0].write_to_path(str(pem.cert))
        leaf.private_key_pem.write_to_path(str(pem.key))
        return pem


@dataclasses.dataclass(frozen=True)
class RunSecurity:
    """A server's certificates and token file, made fresh in a directory (a suite run's, a test's).

    `tls` is `none`, `server` or `mutual`. With `mutual`, `foreign` is a client
    certificate with the same name, signed by a CA the server does not trust.
    """

    ca: Pem
    server: Pem | None
    client: Pem | None
    foreign: Pem | None
    token_file: pathlib.Path | None

    @classmethod
    def create(cls, directory: pathlib.Path, tls: str, tokens: Sequence[str]) -> RunSecurity:
        """Make what the security block asks for under `directory` (which must not exist)."""
        directory.mkdir(parents=True)
        authority = Authority(directory)
        server = client = foreign = None
        if tls != "none":
            server = authority.issue("server", server=True)
        if tls == "mutual":
            client = authority.issue("client", server=False)
            other = directory / "foreign"
            other.mkdir()
            foreign = Authority(other, name="Foreign Test CA").issue("client", server=False)
        token_file = None
        if tokens:
            token_file = directory / "tokens"
            token_file.write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
        return cls(authority.pem, server, client, foreign, token_file)

    @property
    def server_args(self) -> tuple[str, ...]:
        """The `rig grpc` flags that turn this on."""
        args: list[str] = []
        if self.server is not None:
            args += ["--tls-cert", str(self.server.cert), "--tls-key", str(self.server.key)]
        if self.client is not None:
            args += ["--tls-client-ca", str(self.ca.cert)]
        if self.token_file is not None:
            args += ["--auth-token-file", str(self.token_file)]
        return tuple(args)

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """What the server's readiness check dials with (None: plaintext)."""
        if self.server is None:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.cert.read_bytes(),
            private_key=self.client.key.read_bytes() if self.client else None,
            certificate_chain=self.client.cert.read_bytes() if self.client else None,
        )
