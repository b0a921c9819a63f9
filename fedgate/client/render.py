"""Rich renderings shared by the CLI and the demo."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from rich.markup import escape
from rich.table import Table as RichTable

from fedgate.core.audit_entry import AuditEntry
from fedgate.client.gateway import CompareResult, MatchResult, SumResult
from fedgate.core.datasets import FieldGrant, RegisteredDataset
from fedgate.core.row_limit import RowLimit

def _utc_time(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "never"


def datasets_table(datasets: list[RegisteredDataset]) -> RichTable:
    table = RichTable("department", "dataset", "rows", "adapter", "level  field", title="Registered datasets")
    for item in datasets:
        d = item.decl
        fields = "\n".join(f"{f.level}  {f.name}" + (f"  [key: {f.key.value}]" if f.key else "")
                           for f in d.fields)
        if item.live_row_count is None:
            rows = f"{d.row_count:,}\n(at registration)"
        else:
            rows = f"{item.live_row_count:,}\n(at {_utc_time(item.counted_at)})"
        colour = {"live": "green", "unreachable": "red"}.get(item.liveness, "yellow")
        adapter = f"[{colour}]{item.liveness}[/]\nlast contact {_utc_time(item.last_contact)}"
        table.add_row(f"{d.department}\n{item.department_display_name}", d.name, rows, adapter,
                      escape(fields), end_section=True)
    return table


def entries_table(items: Sequence[tuple[int, AuditEntry]]) -> RichTable:
    table = RichTable("#", "time (UTC)", "subject", "action", "decision", "datasets", "case", "sizes", "reason",
                      title="Audit entries")
    for index, e in items:
        colour = {"allow": "green", "deny": "red"}.get(e.decision, "yellow")
        table.add_row(str(index), e.time.replace("T", " ").rstrip("Z"), e.subject.removeprefix("spiffe://fedgate/"),
                      e.action, f"[{colour}]{e.decision}[/] {e.status}", escape(", ".join(e.datasets)),
                      escape(e.case_number), ", ".join(f"{k}={v}" for k, v in e.result_sizes),
                      escape(e.reason))
    return table


def matched(cardinality: int, fewer_than: int) -> str:
    """A matched count as the caller may know it: exact, or "< k" when it was suppressed."""
    return f"< {fewer_than:,}" if fewer_than else f"{cardinality:,}"


def noisy_note(epsilon: float, within: int, unit: str = "") -> str:
    """How a noisy number was answered: its ε and the error it stays within at 95 %."""
    return f"noisy, ε {epsilon:g}: within ±{within:,}{unit} of the truth at 95 %"


def sum_table(result: SumResult) -> RichTable:
    if result.fewer_than:
        return RichTable(title=f"Intersection-sum suppressed: fewer than {result.fewer_than:,} rows of "
                               f"{result.values.dataset} found in {result.other.dataset} (safeguard min_aggregate: "
                               f"no totals), audit entry #{result.audit_index}")
    if result.epsilon > 0:
        table = RichTable("value field", "total (as stored, e.g. fen)", "answered",
                          title=f"Intersection-sum over about {result.cardinality:,} rows of {result.values.dataset} "
                                f"({noisy_note(result.epsilon, result.within())}) found in {result.other.dataset}; "
                                f"decrypted here, audit entry #{result.audit_index}")
        for name, total in result.totals.items():
            table.add_row(escape(name), f"about {total:,}",
                          noisy_note(result.epsilon, result.within(name)) + f" (values clamped to "
                          f"±{result.sensitivity[name]:,} a row)")
        return table
    table = RichTable("value field", "total (as stored, e.g. fen)",
                      title=f"Intersection-sum over {result.cardinality:,} rows of {result.values.dataset} "
                            f"({result.distinct_matches:,} distinct keys) found in {result.other.dataset}; "
                            f"decrypted here, audit entry #{result.audit_index}")
    for name, total in result.totals.items():
        table.add_row(escape(name), f"{total:,}")
    return table


def compare_table(result: CompareResult, left_value: str, right_value: str, weights: tuple[int, int]) -> RichTable:
    a, b = weights
    rule = f"{'' if a == 1 else f'{a}·'}{left_value} > {'' if b == 1 else f'{b}·'}{right_value}"
    table = RichTable("side", "dataset", "rows after filter", "invalid identifiers", "missing values",
                      title=f"Comparison {rule}: {len(result.flagged):,} of {result.pairs:,} matched pairs flagged "
                            f"(decrypted here), audit entry #{result.audit_index}")
    for name, side in (("left", result.left), ("right", result.right)):
        table.add_row(name, side.dataset, f"{side.rows:,}", f"{side.invalid_identifiers:,}",
                      f"{side.missing_values:,}")
    return table


def rows_table(fields: list[FieldGrant], rows: list[list[str | None]], title: str) -> RichTable:
    table = RichTable(*(f"{f.name}\n{f.level} {f.form}" for f in fields), title=title)
    for row in rows:
        table.add_row(*(escape(v) if v is not None else "—" for v in row))
    return table


def match_table(result: MatchResult) -> RichTable:
    if result.epsilon > 0 and not result.fewer_than:
        # The sides' exact counts are withheld from a noisy answer (each would be an exact count itself).
        return RichTable(title=f"Private match: about {result.cardinality:,} matching left rows of "
                               f"{result.left.dataset} in {result.right.dataset} "
                               f"({noisy_note(result.epsilon, result.within())}), audit entry #{result.audit_index}")
    table = RichTable("side", "dataset", "rows after filter", "invalid identifiers", "matched",
                      title=f"Private match: {matched(result.cardinality, result.fewer_than)} matching left rows"
                            + ("" if result.fewer_than else f" ({result.distinct_matches:,} distinct keys)")
                            + f", audit entry #{result.audit_index}")
    table.add_row("left", result.left.dataset, f"{result.left.rows:,}", f"{result.left.invalid_identifiers:,}",
                  matched(result.cardinality, result.fewer_than))
    table.add_row("right", result.right.dataset, f"{result.right.rows:,}", f"{result.right.invalid_identifiers:,}",
                  "")
    return table


def row_limit_line(limit: RowLimit | None, noun: str) -> str | None:
    """A line saying an answer was cut short, and by what; None when it holds every available row."""
    if limit is None or not limit.shortened:
        return None
    return f"[yellow]shortened:[/] {escape(limit.note(noun))}"
