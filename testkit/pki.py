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
