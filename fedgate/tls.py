"""mTLS credentials for servers and channels, from PEM files on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from fedgate import telemetry
from fedgate.errors import ConfigError
from fedgate.identity import Identity
from fedgate.tomlconfig import Table


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the CA certificate and this party's certificate and key."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def from_table(cls, table: Table) -> TlsFiles:
        files = cls(table.path("ca"), table.path("cert"), table.path("key"))
        table.done()
        return files

    @classmethod
    def in_dir(cls, certs_dir: Path, identity: Identity) -> TlsFiles:
        """The files `fedgate certs init` writes for an identity."""
        return cls(certs_dir / "ca.pem", certs_dir / f"{identity.file_stem}.pem",
                   certs_dir / f"{identity.file_stem}.key")

    def read(self) -> tuple[bytes, bytes, bytes]:
        out = []
        for label, path in (("CA certificate", self.ca), ("certificate", self.cert), ("private key", self.key)):
            try:
                out.append(path.read_bytes())
            except OSError as exc:
                raise ConfigError(str(path), f"cannot read {label}: {exc.strerror}") from None
        return out[0], out[1], out[2]


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Server credentials that require and verify a client certificate from our CA."""
    ca, cert, key = files.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    ca, cert, key = files.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def secure_channel(address: str, files: TlsFiles, server: Identity,
                   options: list[tuple[str, object]] | None = None) -> grpc.aio.Channel:
    """A channel that only accepts a server certificate issued to `server`.

    The override makes TLS check the server's certificate against the role DNS
    name (e.g. `hrss.dept.fedgate`) instead of the host we dial, so another
    department's certificate cannot answer for this one.
    """
    opts = [("grpc.ssl_target_name_override", server.dns_name), *(options or [])]
    return grpc.aio.secure_channel(address, channel_credentials(files), options=opts,
                                   interceptors=telemetry.client_interceptors())
