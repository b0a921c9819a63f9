"""Rich renderings shared by the CLI and the demo."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table as RichTable

from typing import TYPE_CHECKING

from fedgate.audit_entry import AuditEntry
from fedgate.datasets import RegisteredDataset

if TYPE_CHECKING:
    from fedgate.client import MatchResult


def datasets_table(datasets: list[RegisteredDataset]) -> RichTable:
    table = RichTable("department", "dataset", "rows", "level  field", title="Registered datasets")
    for item in datasets:
        d = item.decl
        fields = "\n".join(f"{f.level}  {f.name}" + (f"  [key: {f.key.value}]" if f.key else "")
                           for f in d.fields)
        table.add_row(f"{d.department}\n{item.department_display_name}", d.name, f"{d.row_count:,}",
                      escape(fields), end_section=True)
    return table


def entries_table(items: list[tuple[int, AuditEntry]]) -> RichTable:
    table = RichTable("#", "time (UTC)", "subject", "action", "decision", "datasets", "case", "sizes", "reason",
                      title="Audit entries")
    for index, e in items:
        colour = {"allow": "green", "deny": "red"}.get(e.decision, "yellow")
        table.add_row(str(index), e.time.replace("T", " ").rstrip("Z"), e.subject.removeprefix("spiffe://fedgate/"),
                      e.action, f"[{colour}]{e.decision}[/] {e.status}", escape(", ".join(e.datasets)),
                      escape(e.case_number), ", ".join(f"{k}={v}" for k, v in e.result_sizes),
                      escape(e.reason))
    return table


def match_table(result: MatchResult) -> RichTable:
    table = RichTable("side", "dataset", "rows after filter", "invalid identifiers", "matched",
                      title=f"Private match: {result.cardinality:,} matching left rows "
                            f"({result.distinct_matches:,} distinct keys), audit entry #{result.audit_index}")
    table.add_row("left", result.left.dataset, f"{result.left.rows:,}", f"{result.left.invalid_identifiers:,}",
                  f"{result.cardinality:,}")
    table.add_row("right", result.right.dataset, f"{result.right.rows:,}", f"{result.right.invalid_identifiers:,}",
                  "")
    return table
