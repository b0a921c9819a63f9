"""Gateway configuration (`gateway.toml`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from fedgate.core.classification import policies_dir
from fedgate.core.officer_seal import SealKey
from fedgate.server.tls import TlsFiles
from fedgate.core.tomlconfig import Table
from fedgate.core.errors import ConfigError
from fedgate.server.worker_pool import default_workers
from fedgate.gateway.spill import DEFAULT_ABOVE_ROWS, DEFAULT_BUCKET_ROWS, DEFAULT_BUCKETS, SPILL_DIR, SpillConfig

DEFAULT_ORIGIN = "fedgate.local/audit"
log = logging.getLogger(__name__)

EXAMPLE = """\
# fedgate gateway configuration. Paths are relative to this file.
listen = "127.0.0.1:50051"      # host:port; port 0 picks a free port
# health_listen = "0.0.0.0:8081"       # a plaintext port serving only grpc.health.v1, for probes without mTLS (default: off)
data_dir = "gateway-data"       # SQLite registry.db and audit.db (the defaults below), log-signing key, spans.db
# registry_url = "postgresql+psycopg://fedgate@db/fedgate"  # registry and daily quotas; default: SQLite in data_dir
# audit_url = "postgresql+psycopg://fedgate@db/fedgate"     # default: SQLite in data_dir; replicas share one PostgreSQL log
# One gateway per data_dir (a running gateway locks it): each replica has its own.
# log_origin = "fedgate.local/audit"   # names the audit log in its signed checkpoints
# signing_key = "gateway-data/log-signing.key"  # Ed25519; created with its .vkey if missing; replicas share one
# Durations (*_s) are whole seconds and must be positive (policy_watch_s may be 0: off).
# ticket_ttl_s = 60                    # how long an adapter accepts a query ticket
# policy_dir = "policies"              # model.conf, policy.csv, levels.toml, safeguards.toml (default: shipped)
# policy_watch_s = 2                   # check the policy files this often, reload on a change; 0: only `fedgate policy reload`
# workers = 2                          # processes for Paillier sums and comparisons (default: all cores; 0: threads)
# adapter_idle_timeout_s = 300         # give up on a match stream its adapter sends nothing on for this long
# flags_timeout_s = 300                # how long a comparison waits for the client's flagged pairs
# health_check_s = 30                  # ask every registered adapter's health service this often
# spill_above_rows = 250000            # a match holding more tokens, or ciphertexts of one side, spills them to data_dir/spill/
# spill_buckets = 64                   # hash-bucket files a side a spilled match's tokens are spread over
# spill_bucket_rows = 1048576          # tokens (both sides) intersected at once: a larger bucket is split further
# The security officers' public key (`fedgate certs init` writes the pair beside the certificates): exact filters
# are logged sealed to it, for officers only (`fedgate audit open`). Keep officer-seal.key away from the gateway.
# Without it the gateway still runs, logging filters redacted only, and says so at start.
officer_seal_key = "certs/officer-seal.pub"

[tls]
ca = "certs/ca.pem"
cert = "certs/gateway.pem"
key = "certs/gateway.key"
# The CA's revocation list (`fedgate certs revoke` / `certs crl` write it); re-read when it changes.
# Without it no caller is checked against one.
crl = "certs/crl.pem"
"""


@dataclass(frozen=True)
class GatewayConfig:
    listen: str
    data_dir: Path
    tls: TlsFiles
    health_listen: str = ""  # "": no plaintext health port
    registry_url: str = ""
    audit_url: str = ""
    log_origin: str = DEFAULT_ORIGIN
    signing_key: Path | None = None
    ticket_ttl_s: int = 60
    policy_dir: Path | None = None
    policy_watch_s: int = 2
    workers: int = 0
    adapter_idle_timeout_s: int = 300
    flags_timeout_s: int = 300
    health_check_s: int = 30
    officer_seal_key: Path | None = None
    spill_above_rows: int = DEFAULT_ABOVE_ROWS
    spill_buckets: int = DEFAULT_BUCKETS
    spill_bucket_rows: int = DEFAULT_BUCKET_ROWS

    @property
    def spill(self) -> SpillConfig:
        return SpillConfig(self.data_dir / SPILL_DIR, self.spill_above_rows, self.spill_buckets,
                           self.spill_bucket_rows)

    @property
    def effective_policy_dir(self) -> Path:
        return self.policy_dir or policies_dir()

    @property
    def effective_registry_url(self) -> str:
        return self.registry_url or f"sqlite+pysqlite:///{self.data_dir / 'registry.db'}"

    @property
    def effective_audit_url(self) -> str:
        return self.audit_url or f"sqlite+pysqlite:///{self.data_dir / 'audit.db'}"

    @property
    def effective_signing_key(self) -> Path:
        return self.signing_key or self.data_dir / "log-signing.key"

    @classmethod
    def load(cls, path: Path) -> GatewayConfig:
        """Read and check gateway.toml; ConfigError names the file and the key."""
        table = Table.load(path)
        config = cls(
            listen=table.address("listen", listen=True),
            health_listen=table.address("health_listen", "", listen=True),
            data_dir=table.path("data_dir"),
            registry_url=table.text("registry_url", ""),
            audit_url=table.text("audit_url", ""),
            log_origin=table.text("log_origin", DEFAULT_ORIGIN),
            signing_key=table.path("signing_key", None),
            ticket_ttl_s=table.duration("ticket_ttl_s", 60),
            policy_dir=table.path("policy_dir", None),
            policy_watch_s=table.duration("policy_watch_s", 2, zero_turns_off=True),
            workers=table.integer("workers", default_workers()),
            adapter_idle_timeout_s=table.duration("adapter_idle_timeout_s", 300),
            flags_timeout_s=table.duration("flags_timeout_s", 300),
            health_check_s=table.duration("health_check_s", 30),
            officer_seal_key=table.path("officer_seal_key", None),
            spill_above_rows=table.integer("spill_above_rows", DEFAULT_ABOVE_ROWS),
            spill_buckets=table.integer("spill_buckets", DEFAULT_BUCKETS),
            spill_bucket_rows=table.integer("spill_bucket_rows", DEFAULT_BUCKET_ROWS),
            tls=TlsFiles.from_table(table.table("tls")),
        )
        table.done()
        if config.spill_above_rows < 0 or not 1 <= config.spill_buckets <= 65536 or config.spill_bucket_rows < 1:
            raise ConfigError(str(path), "spill_above_rows must be >= 0, spill_buckets within 1..65536 and "
                              "spill_bucket_rows >= 1")
        return config


def load_officer_seal(config: GatewayConfig) -> SealKey | None:
    """The officers' public key the gateway seals exact filters to; None (said once, here) if none is configured.

    A gateway without one keeps serving, since refusing would stop every deployment configured before the
    key existed; a configured key that cannot be read stops the start (ConfigError), as any bad file does.
    """
    if config.officer_seal_key is None:
        log.warning("no officer_seal_key in gateway.toml: filters are logged redacted only, and security officers "
                    "cannot open them (`fedgate certs init` writes certs/officer-seal.pub)")
        return None
    return SealKey.load(config.officer_seal_key)
