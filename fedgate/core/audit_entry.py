"""Audit log entries and their canonical encoding (the bytes the Merkle tree hashes).

An entry records who asked for what, under which case, what was decided and
how much left — never a raw identifier or value. The canonical form is JSON
with sorted keys, no insignificant whitespace and UTF-8 text; decoding
re-encodes and compares, so two different byte strings can never stand for
the same entry.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from fedgate.core.errors import RemoteProtocolError

ENTRY_VERSION = 1


def utc_now() -> str:
    """The current time as RFC 3339 UTC with millisecond precision."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class AuditEntry:
    time: str
    subject: str          # caller's SPIFFE ID, from its verified certificate
    role: str
    action: str           # e.g. registry.register, registry.list, audit.read
    method: str           # full gRPC method name
    decision: str         # allow | deny | error
    status: str           # gRPC status name of the reply
    datasets: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    purpose: str = ""
    case_number: str = ""
    rule: str = ""        # the policy rule behind the decision
    reason: str = ""      # why a request was refused or failed (a domain error message)
    result_sizes: tuple[tuple[str, int], ...] = ()
    trace_id: str = ""    # for correlation only; supplied by the client, never a key
    query_id: str = ""    # links a query's pre-access entry to its outcome entry and tickets
    # What adapters check a ticket against: field forms and levels, the filter with its
    # values blanked and a salted digest of the exact filter, safeguard values.
    params: tuple[tuple[str, str], ...] = ()
    v: int = field(default=ENTRY_VERSION)

    def canonical(self) -> bytes:
        """The exact bytes hashed into the log."""
        obj = asdict(self)
        obj["datasets"] = list(self.datasets)
        obj["fields"] = list(self.fields)
        obj["result_sizes"] = {k: v for k, v in self.result_sizes}
        obj["params"] = {k: v for k, v in self.params}
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.canonical())  # type: ignore[no-any-return]

    @classmethod
    def from_canonical(cls, data: bytes) -> AuditEntry:
        """Decode canonical bytes; RemoteProtocolError if they are not exactly canonical."""
        try:
            obj = json.loads(data.decode("utf-8"))
            if not isinstance(obj, dict):
                raise TypeError("not an object")
            sizes = obj.pop("result_sizes")
            params = obj.pop("params")
            if not isinstance(sizes, Mapping) or not isinstance(params, Mapping):
                raise TypeError("result_sizes / params")
            entry = cls(**{**obj, "datasets": tuple(obj["datasets"]), "fields": tuple(obj["fields"]),
                           "result_sizes": tuple(sorted((str(k), int(v)) for k, v in sizes.items())),
                           "params": tuple(sorted((str(k), str(v)) for k, v in params.items()))})
        except (UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
            raise RemoteProtocolError(f"audit entry is not valid canonical JSON ({type(exc).__name__})") from None
        if entry.canonical() != data:
            raise RemoteProtocolError("audit entry bytes are not in canonical form")
        return entry

