"""What an adapter is asked to release, checked against the signed audit entry and its own declarations.

Defence in depth: the gateway decided by policy, but the department decides
again by its own declarations and level ceilings, and masks before anything
leaves. A ticket the gateway signed is still refused if it asks for more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fedgate.adapters.sources import Value
from fedgate.core.audit_entry import AuditEntry
from fedgate.core.classification import Levels
from fedgate.crypto.ids import normalise
from fedgate.crypto.ticket import TicketRefused
from fedgate.core.errors import InvalidIdentifier
from fedgate.core.datasets import DatasetDecl, FieldGrant
from fedgate.query.audit_params import QueryParams, decode, filter_digest, paillier_key_digest
from fedgate.query.safeguards import Release, ReleasedField, Safeguards


@dataclass(frozen=True)
class Ask:
    """One request to this adapter, as it arrived."""

    action: str
    dataset: DatasetDecl
    fields: tuple[FieldGrant, ...] = ()
    filter_text: str = ""
    filter_nonce: bytes = b""
    min_set_size: int = 0
    key_field: str = ""
    # Sum, compare: the integer fields encrypted, and the supervisor's key they are encrypted under.
    values: tuple[str, ...] = ()
    paillier_key: bytes = b""
    # A match's side (left/right): its key, filter and values are logged per side, and only the left discloses.
    role: str = ""
    # The row limit the request carries (a disclosure, a match's left side), bound to the logged one;
    # None where the request carries none (a count, a match's right side, which never discloses).
    limit: int | None = None
    # A match's protocol (keyed, ecdh) and the other side's department; "" in a count or disclosure.
    mode: str = ""
    peer: str = ""


def check_ask(entry: AuditEntry, ask: Ask, levels: Levels) -> QueryParams:
    """Refuse unless the logged request is exactly this one and within this department's ceilings.

    Every parameter the request carries is compared with the logged one: action, dataset, filter digest,
    minimum set size, key field, value fields, Paillier key digest, protocol, peer department, row limit,
    fields with their forms and levels. Those the request does not carry (max_match_rows, min_aggregate)
    are taken from the entry: the returned parameters are the numbers this department enforces while it
    serves the request. Weights are the gateway's arithmetic, never sent to a department.
    """
    qualified = ask.dataset.qualified_name
    if entry.action != ask.action:
        raise TicketRefused(f"the logged request is '{entry.action}', not '{ask.action}'")
    if qualified not in entry.datasets:
        raise TicketRefused(f"the logged request does not name dataset '{qualified}'")
    if entry.decision != "allow":
        raise TicketRefused("the logged request was not allowed")
    params = decode(dict(entry.params))
    side = params.logged_side(qualified, ask.role)
    logged_digest = side.filter.digest if side.filter else ""
    if (ask.filter_text or logged_digest) and filter_digest(ask.filter_nonce, ask.filter_text) != logged_digest:
        raise TicketRefused("the filter sent is not the one in the audit log")
    if ask.min_set_size != (params.min_set_size or 0):
        raise TicketRefused("the minimum set size sent is not the one in the audit log")
    if ask.key_field != side.key_field:
        raise TicketRefused("the key field sent is not the one in the audit log")
    if ask.values != side.value_fields:
        raise TicketRefused("the value fields sent are not the ones in the audit log")
    if ask.values and paillier_key_digest(ask.paillier_key) != params.paillier_key_sha256:
        # Defence in depth: values are encrypted only under the key the log names.
        raise TicketRefused("the Paillier key sent is not the one in the audit log")
    if ask.mode != params.mode:
        raise TicketRefused("the matching protocol (mode) sent is not the one in the audit log")
    _check_peer(params, ask)
    if ask.limit is not None and ask.limit != params.limit:
        raise TicketRefused("the row limit sent is not the one in the audit log")
    # Released fields are those the log gives a form for; nothing else may leave. A match's right
    # side never discloses (its adapter refuses fields), so the forms are the left side's.
    logged = params.forms_of(qualified)
    if sorted(f.name for f in ask.fields) != sorted(logged) and not (ask.role == "right" and not ask.fields):
        raise TicketRefused("the fields asked for are not the ones in the audit log")
    released = []
    for f in ask.fields:
        decl = ask.dataset.field(f.name)
        if decl is None:
            raise TicketRefused(f"dataset '{qualified}' declares no field '{f.name}'")
        if logged[f.name] != (f.form, f.level):
            raise TicketRefused(f"field '{f.name}': form or level differs from the audit log")
        if f.level != decl.level:
            raise TicketRefused(f"field '{f.name}' is {decl.level} here, not {f.level} as the gateway holds")
        released.append(ReleasedField(f.name, f.form, decl.level))
    Safeguards.for_department(levels).release(Release(params, tuple(released), ask.limit))
    return params


def _check_peer(params: QueryParams, ask: Ask) -> None:
    """A match side works with the department of the entry's other side, never one the entry does not name."""
    if not ask.role:
        return
    peers = {ref.dataset.partition(".")[0] for ref in params.sides if ref.role and ref.role != ask.role}
    if peers and ask.peer not in peers:
        raise TicketRefused("the peer department sent is not the one the audit log names for the other side")


def render(values: Sequence[Value], fields: Sequence[FieldGrant], dataset: DatasetDecl,
           levels: Levels) -> tuple[list[str], list[bool]]:
    """Turn one row into text, masking each field whose form is 'masked'."""
    out, nulls = [], []
    for value, f in zip(values, fields):
        if value is None:
            out.append("")
            nulls.append(True)
            continue
        text = str(value)
        decl = dataset.field(f.name)
        assert decl is not None
        if decl.key is not None:
            # Identifiers leave in canonical form, so a mask never reveals how a clerk typed them.
            try:
                text = normalise(decl.key, text)
            except InvalidIdentifier:
                pass
        if f.form == "masked":
            text = levels.mask_for(decl.key.value if decl.key else None, decl.type.value, decl.level).apply(text)
        out.append(text)
        nulls.append(False)
    return out, nulls
