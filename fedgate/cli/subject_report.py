"""A subject report at the command line: the report (`fedgate.adapters.subject_report`) as a table."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table as RichTable

from fedgate.adapters.subject_report import SubjectReport


def report_table(report: SubjectReport) -> RichTable:
    """The report: when, who asked, for which case and purpose, what kind of answer, in what form."""
    table = RichTable("time (UTC)", "agency", "supervisor", "case", "purpose", "kind", "dataset", "side", "form",
                      title=f"Uses of one subject's records in department {report.department}'s answers")
    for e in report.entries:
        table.add_row(e.time.replace("T", " ").rstrip("Z"), escape(e.agency), escape(e.supervisor),
                      escape(e.case_number), escape(e.purpose), e.kind, escape(e.dataset), e.side or "-",
                      escape(e.form))
    return table
