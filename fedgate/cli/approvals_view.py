"""Approvals at the command line: a department's queue as tables, and a supervisor's held requests on disk.

A supervisor's request held for approval is kept on the supervisor's own
machine (`pending/<query id>.json`, mode 0600, under the state directory): the
command line that asked and the filter nonces the gateway gave, so `fedgate
query collect` can send the same request again. The gateway keeps neither.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape
from rich.table import Table as RichTable

from fedgate.client.approvals import HeldRequest, held_summary
from fedgate.core.errors import InvalidInput, NotFound

STATE_ENV = "FEDGATE_STATE_DIR"


def state_dir() -> Path:
    """Where the command line keeps its state: $FEDGATE_STATE_DIR, else ~/.local/state/fedgate."""
    return Path(os.environ.get(STATE_ENV) or Path.home() / ".local/state/fedgate")


@dataclass(frozen=True)
class HeldLocally:
    """A request this supervisor sent that waits for approval: how to send it again."""

    query_id: str
    argv: tuple[str, ...]
    nonces: str

    @staticmethod
    def path(query_id: str) -> Path:
        if not (len(query_id) == 32 and all(c in "0123456789abcdef" for c in query_id)):
            raise InvalidInput("a query id is 32 lower-case hex digits (as the pending reply printed it)")
        return state_dir() / "pending" / f"{query_id}.json"

    def save(self) -> Path:
        path = self.path(self.query_id)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Written private first, then moved into place: the command line holds the filter's values.
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"query_id": self.query_id, "argv": list(self.argv), "nonces": self.nonces}, f)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, query_id: str) -> HeldLocally:
        path = cls.path(query_id)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFound(f"no held request {query_id} was sent from this account ({path} is missing): collect "
                           "it where it was asked, or run the same query again with --collect") from None
        return cls(obj["query_id"], tuple(obj["argv"]), obj.get("nonces", ""))

    def forget(self) -> None:
        self.path(self.query_id).unlink(missing_ok=True)


def held_table(items: list[HeldRequest], department: str) -> RichTable:
    table = RichTable(title=f"requests held for {department}'s approval")
    for col in ("query id", "asked", "expires", "state", "supervisor", "purpose / case", "kind", "fields",
                "missing"):
        table.add_column(col)
    for h in items:
        s = held_summary(h, department)
        missing = sum(n["missing"] for n in s["needs"] if n["department"] == department)
        table.add_row(h.query_id, s["asked"], s["expires"], h.state, escape(s["supervisor"].rsplit("/", 2)[-2] + "/"
                                                                          + s["supervisor"].rsplit("/", 1)[-1]),
                      escape(f"{s['purpose']} / {s['case_number']}"), s["kind"],
                      escape(", ".join(s["fields"]) or "aggregate only"), str(missing))
    return table
