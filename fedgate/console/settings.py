"""What one console serves: whose it is, which gateway it talks to, and that person's keys and files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedgate.core.errors import InvalidInput
from fedgate.core.identity import Identity, Role, identity_from_pem
from fedgate.server.tls import TlsFiles

CONSOLE_ROLES = (Role.OFFICER, Role.DEPARTMENT)


@dataclass(frozen=True)
class ConsoleSettings:
    """A console's configuration: its owner's certificate names the role it serves."""

    gateway: str
    tls: TlsFiles
    host: str = "127.0.0.1"
    port: int = 8443
    # Officers: the gateway's pinned log verifier key, where verified state is kept, department witness keys.
    vkey: Path | None = None
    state_dir: Path | None = None
    witness_keys: Path | None = None
    # How many pinned witnesses must have cosigned a checkpoint covering the newest query entry for a whole-log
    # verification to pass (None: 1 with witness keys, else 0, as `fedgate audit verify`).
    witness_quorum: int | None = None
    # Departments: the adapter's TOML (its disclosure log and subject-use store) and an approver key.
    adapter_config: Path | None = None
    approver_key: Path | None = None
    # A CRL from the CA: a browser certificate on it is refused in the handshake.
    crl: Path | None = None

    def owner(self) -> Identity:
        """The identity of the console's certificate; InvalidInput unless an officer's or a department's."""
        try:
            who = identity_from_pem(self.tls.cert.read_bytes())
        except OSError as exc:
            raise InvalidInput(f"cannot read --cert {self.tls.cert}: {exc.strerror}") from None
        if who.role not in CONSOLE_ROLES:
            raise InvalidInput(f"--cert is {who}: the console is for security officers and departments; "
                               "supervisors use the `fedgate query` commands")
        if who.role is Role.OFFICER and self.vkey is None:
            raise InvalidInput("an officer's console needs --vkey, the gateway's pinned log verifier key "
                               "(log-signing.vkey): every proof is checked against it")
        if who.role is Role.DEPARTMENT and self.adapter_config is None:
            raise InvalidInput("a department's console needs --config, the adapter's TOML (its data_dir holds "
                               "the disclosure log and subject-use store)")
        return who
