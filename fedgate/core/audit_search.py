"""Audit search criteria as people write them, checked and put in the one form entries are compared in.

A criterion that cannot match anything (a mistyped action, a time in a form the
log does not use, a subject without its role) is an error that lists the forms
accepted, never an empty answer. The CLI and the gateway both go through here.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from fedgate.core.errors import InvalidInput
from fedgate.core.identity import TRUST_DOMAIN, Identity, Role

# Every action the gateway writes to its log. A new action must be added here, or it cannot be searched for.
ALERT_ACTION = "audit.alert"  # a probing alert the gateway raised (fedgate.query.probing); `--alerts` lists them
ACTIONS = (
    ALERT_ACTION, "approval.decide", "approval.list", "approval.show", "audit.checkpoint", "audit.proof",
    "audit.read", "audit.search", "audit.trace", "budget.show", "policy.reload",
    "query.compare", "query.count", "query.disclose", "query.match", "query.sum",
    "registry.list", "registry.register",
)
DECISIONS = ("allow", "deny", "error", "alert")  # alert: a probing alert, not a decision on a call
# A call refused before it was named (unauthenticated, malformed) is logged under its gRPC method, e.g. "Match".
_METHOD = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_AGE = re.compile(r"^(\d{1,6})\s*(m|min|h|d|w)$")
_AGE_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_AGENCY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_DATASET = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\.[a-z][a-z0-9_]{0,62}$")
TIME_FORMS = ("an ISO date (2026-11-29, midnight UTC), an RFC 3339 time (2026-11-29T08:00:00Z or "
              "2026-11-29T16:00:00+08:00; without an offset it is UTC), now, today, yesterday (midnight UTC), "
              "or an age such as 30m, 24h, 7d, 2w")


@dataclass(frozen=True)
class Criteria:
    """Checked criteria, in the forms entries hold (times as RFC 3339 UTC with milliseconds)."""

    subject: str = ""
    dataset: str = ""
    case_number: str = ""
    decision: str = ""
    action: str = ""
    since: str = ""
    until: str = ""
    agency: str = ""  # callers (supervisors, officers) of this agency


def checked(subject: str = "", dataset: str = "", case_number: str = "", decision: str = "", action: str = "",
            since: str = "", until: str = "", now: dt.datetime | None = None, alerts: bool = False,
            agency: str = "") -> Criteria:
    """Check every criterion; InvalidInput names the one that cannot match and the forms accepted.

    `alerts` asks for probing alerts only (the action `audit.alert`), beside the other criteria.
    """
    now = now or dt.datetime.now(dt.UTC)
    if alerts:
        if normal_action(action) not in ("", ALERT_ACTION):
            raise InvalidInput(f"--alerts lists the action {ALERT_ACTION} only; drop --action {action[:64]!r}")
        action = ALERT_ACTION
    start, end = point_in_time(since, "since", now), point_in_time(until, "until", now)
    if start and end and end <= start:
        raise InvalidInput(f"--until ({end}) must be later than --since ({start})")
    return Criteria(normal_subject(subject), normal_dataset(dataset), case_number.strip(),
                    normal_decision(decision), normal_action(action), start, end, normal_agency(agency))


_AGENCY_ROLES = (Role.SUPERVISOR, Role.OFFICER)


def normal_agency(text: str) -> str:
    """An agency code as SPIFFE IDs hold it (supervisor/<agency>/<user>), or InvalidInput."""
    text = text.strip().lower()
    if text and not _AGENCY.match(text):
        raise InvalidInput(f"--agency {text[:64]!r} is not an agency code (lower-case letters, digits, '-' or '_', "
                           "as in supervisor/<agency>/<user>)")
    return text


def of_agency(subject: str, agency: str) -> bool:
    """Whether an entry's subject (a SPIFFE ID) is a supervisor or officer of `agency`."""
    prefix = f"spiffe://{TRUST_DOMAIN}/"
    return any(subject.startswith(f"{prefix}{role.value}/{agency}/") for role in _AGENCY_ROLES)


def rfc3339(moment: dt.datetime) -> str:
    """The form audit entries carry their time in (fedgate.core.audit_entry.utc_now)."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def point_in_time(text: str, name: str, now: dt.datetime) -> str:
    """`text` (any form in TIME_FORMS) as RFC 3339 UTC with milliseconds; "" stays ""."""
    text = text.strip()
    if not text:
        return ""
    try:
        return rfc3339(_moment(text, name, now))
    except OverflowError:  # an age of 999999d, or year 1 moved to UTC
        raise InvalidInput(f"--{name}: {text[:64]!r} is out of range; write {TIME_FORMS}") from None


def _moment(text: str, name: str, now: dt.datetime) -> dt.datetime:
    lowered = text.lower()
    midnight = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if lowered == "now":
        return now
    if lowered == "today":
        return midnight
    if lowered == "yesterday":
        return midnight - dt.timedelta(days=1)
    if age := _AGE.match(lowered):
        return now - dt.timedelta(**{_AGE_UNITS[age.group(2)]: int(age.group(1))})
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            moment = dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)
        else:
            moment = dt.datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        raise InvalidInput(f"--{name}: cannot read {text[:64]!r} as a time; write {TIME_FORMS}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def normal_subject(text: str) -> str:
    """A SPIFFE ID from either form fedgate prints: spiffe://fedgate/supervisor/dcb/alice or supervisor/dcb/alice."""
    text = text.strip()
    if not text or text == "unauthenticated":
        return text
    prefix = f"spiffe://{TRUST_DOMAIN}/"
    uri = text if text.startswith("spiffe://") else prefix + text.strip("/")
    try:
        return Identity.parse(uri).spiffe_id
    except ValueError as exc:
        raise InvalidInput(f"--subject {text[:128]!r} is not a fedgate identity ({exc}); write it as the audit "
                           "table prints it, e.g. supervisor/dcb/alice, officer/audit/bob, dept/hrss, gateway, "
                           "or in full, spiffe://fedgate/supervisor/dcb/alice") from None


def normal_dataset(text: str) -> str:
    text = text.strip()
    if text and not _DATASET.match(text):
        raise InvalidInput(f"--dataset {text[:128]!r} is not a qualified dataset name; write "
                           "department.dataset, e.g. hrss.subsidies")
    return text


def normal_decision(text: str) -> str:
    text = text.strip().lower()
    if text and text not in DECISIONS:
        raise InvalidInput(f"--decision {text[:64]!r} is not one of {', '.join(DECISIONS)}")
    return text


def normal_action(text: str) -> str:
    """A logged action; a bare name that belongs to one area ("match") is taken as that action."""
    text = text.strip()
    if not text or text in ACTIONS or _METHOD.match(text):
        return text
    lowered = text.lower()
    if lowered in ACTIONS:
        return lowered
    named = [a for a in ACTIONS if a.split(".", 1)[1] == lowered]
    if len(named) == 1:
        return named[0]
    raise InvalidInput(f"--action {text[:64]!r} is not an action the gateway logs; one of {', '.join(ACTIONS)} "
                       "(or a bare name such as match)")
