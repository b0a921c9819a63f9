"""Progress lines for a long query: per side, its stage, rows done of the total, rate and time left.

The gateway sends coarse counts and the dataset's published row count
(docs/privacy.md, "Progress"); the rate and the time left are worked out
here, from when each count arrived, so they add nothing the counts did not
already show.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedgate.client.gateway import ProgressReport

SIDES = ("left", "right")


@dataclass
class _Stage:
    """Where a side's current stage started, for its rate."""

    name: str
    since: float
    first_count: int
    first_at: float


@dataclass
class ProgressBoard:
    """The latest report per line; `update` gives the line's key and its text."""

    started: float
    _reports: dict[str, ProgressReport] = field(default_factory=dict)
    _stages: dict[str, _Stage] = field(default_factory=dict)

    def update(self, report: ProgressReport, now: float) -> tuple[str, str]:
        """Take one report (at `now`, in seconds); the key of the line it changes and that line's text."""
        if report.phase not in SIDES or not report.stage:
            key = f"{report.phase} {report.department}".strip()
            return key, f"{key}: {report.tokens:,}"
        key = report.phase
        self._reports[key] = report
        count = _count(report)
        stage = self._stages.get(key)
        if stage is None or stage.name != report.stage:
            stage = self._stages[key] = _Stage(report.stage, now, count, now)
        return key, self._side_line(report, stage, count, now)

    def _side_line(self, report: ProgressReport, stage: _Stage, count: int, now: float) -> str:
        head = f"{report.phase} {report.department}: {report.stage}"
        if report.stage == "done":
            if report.withheld or not report.rows_blinded:
                return head
            return f"{head}, {report.rows_blinded:,} rows" + (f", {report.tokens:,} tokens" if report.tokens else "")
        if report.withheld:
            # A noisy answer's filtered side: any count, rate or time left would show its size.
            return f"{head} (counts withheld: noisy answer), {_duration(now - stage.since)} so far"
        total, bound = self._total(report)
        parts = [head, f"{count:,}" + (f" of {'at most ' if bound else ''}{total:,}" if total else "")]
        if total and not bound and count <= total:
            parts[-1] += f" ({100 * count // total}%)"
        rate = (count - stage.first_count) / (now - stage.first_at) if now > stage.first_at else 0.0
        if rate > 0:
            parts.append(f"{rate:,.0f}/s")
            if total and count <= total:
                parts.append(f"{'at most ' if bound else 'about '}{_duration((total - count) / rate)} left")
        return ", ".join(parts)

    def _total(self, report: ProgressReport) -> tuple[int, bool]:
        """What this stage counts towards, and whether it is only an upper bound."""
        if report.stage == "re-blinding":
            # The peer's tokens: final once the peer has finished its own (its stage moved on).
            peer = self._reports.get("right" if report.phase == "left" else "left")
            if peer is None or peer.withheld or peer.stage == "blinding":
                return 0, False
            return peer.tokens, False
        return report.dataset_rows, report.filtered


def _count(report: ProgressReport) -> int:
    if report.stage == "re-blinding":
        return report.tokens_reblinded
    # An adapter older than progress reports: the tokens the gateway counted stand for the rows.
    return max(report.rows_blinded, report.tokens)


def _duration(seconds: float) -> str:
    s = max(int(seconds), 0)
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60}m"
    if s >= 60:
        return f"{s // 60}m {s % 60}s"
    return f"{s}s"
