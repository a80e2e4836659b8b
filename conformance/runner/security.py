"""A run's certificates and token file, as its case's `security:` block asks for them."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence

import grpc

from testkit.pki import Authority, Pem


@dataclasses.dataclass(frozen=True)
class RunSecurity:
    """One run's certificates and token file, made fresh in its directory.

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
