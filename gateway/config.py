"""Gateway configuration (`gateway.toml`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedgate.tls import TlsFiles
from fedgate.tomlconfig import Table

EXAMPLE = """\
# fedgate gateway configuration. Paths are relative to this file.
listen = "127.0.0.1:50051"      # host:port; port 0 picks a free port
data_dir = "gateway-data"       # registry (and later the audit log) live here
# registry_url = "postgresql+psycopg://fedgate@db/fedgate"  # default: SQLite in data_dir

[tls]
ca = "certs/ca.pem"
cert = "certs/gateway.pem"
key = "certs/gateway.key"
"""


@dataclass(frozen=True)
class GatewayConfig:
    listen: str
    data_dir: Path
    tls: TlsFiles
    registry_url: str = ""

    @property
    def effective_registry_url(self) -> str:
        return self.registry_url or f"sqlite+pysqlite:///{self.data_dir / 'registry.db'}"

    @classmethod
    def load(cls, path: Path) -> GatewayConfig:
        """Read and check gateway.toml; ConfigError names the file and the key."""
        table = Table.load(path)
        config = cls(
            listen=table.str("listen"),
            data_dir=table.path("data_dir"),
            registry_url=table.str("registry_url", ""),
            tls=TlsFiles.from_table(table.table("tls")),
        )
        table.done()
        return config
