"""The parameters of a query's audit entry: one typed, versioned schema, written by the gateway, read by adapters.

The gateway logs what an adapter will be asked (key fields, filters with their
values blanked, value fields, disclosure forms, safeguard values) and each
adapter re-checks its request against the entry the ticket proves. Both sides
go through this module, so no key format exists twice. The flat key formats
are those officers' logs already hold, e.g.::

    params_version              "3" (entries logged before the schema have none: version 1)
    key.{side}.{dataset}        the key field a match side matches on
    filter.[{side}.]{dataset}   the filter with its values blanked
    filter_digest.[{side}.]{dataset}   SHA-256(nonce || exact filter)
    sealed_filter.[{side}.]{dataset}   version 2, when the gateway has the officers' key: the exact filter and
                                the digest's nonce, sealed to the security officers (base64 sealed box)
    values.{side}.{dataset}     the integer fields a sum or comparison encrypts (comma-separated)
    bounds.{side}.{dataset}     version 3, a noisy sum: each value field's declared range, "field:min:max"
                                (comma-separated), which the department clamps to and calibrates its noise by
    noise_epsilon_micro         version 3, a noisy answer: the ε (micro-ε) each noisy number of it gets; a
                                sum's department draws its totals' noise with it
    form.{dataset}.{field}      plaintext | masked: how a disclosed field leaves
    level.{dataset}.{field}     the field's level as the gateway holds it
    mode, min_set_size, limit, limit_requested, min_aggregate, max_match_rows,
    paillier_key_sha256, paillier_key_bits, weights

``{side}`` is ``left`` or ``right`` in a match, sum or comparison (so both sides
can be the same dataset) and absent in a count or disclosure; ``{dataset}`` is
the qualified ``department.dataset``. Names never contain dots, so a key splits
unambiguously.

Version 2 adds ``sealed_filter``, version 3 ``bounds`` and ``noise_epsilon_micro``;
older entries decode as before.
Adapters re-check the redacted form and the digest, never the sealed text (they
cannot open it); ``open_filter`` is the officers' side.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from fedgate.core.errors import VerificationError
from fedgate.core.officer_seal import OpenKey, SealKey
from fedgate.crypto.ticket import TicketRefused

PARAMS_VERSION = 3
READABLE_VERSIONS = ("1", "2", "3")
VERSION_KEY = "params_version"
SIDES = ("left", "right")
_INTEGER = re.compile(r"-?[0-9]{1,19}")
# Integer parameters, by key; a missing one decodes as None (not logged for that query kind).
_INTEGERS = ("min_set_size", "limit", "limit_requested", "min_aggregate", "max_match_rows", "paillier_key_bits")


def filter_digest(nonce: bytes, text: str) -> str:
    """SHA-256(nonce || filter): binds a filter into the log without recording or exposing its values."""
    return hashlib.sha256(nonce + text.encode("utf-8")).hexdigest()


def paillier_key_digest(public_key: bytes) -> str:
    """SHA-256 of the supervisor's Paillier public key in wire form, as logged with a sum or comparison."""
    return hashlib.sha256(public_key).hexdigest()


class SideRef(NamedTuple):
    """A dataset's part in a query: ``role`` is left/right in a match, "" in a count or disclosure."""

    dataset: str   # qualified: department.dataset
    role: str = ""

    @property
    def suffix(self) -> str:
        return f"{self.role}.{self.dataset}" if self.role else self.dataset


@dataclass(frozen=True)
class LoggedFilter:
    """A filter as the log keeps it: its text with values blanked, a salted digest of the exact text and,
    when the gateway has the officers' key, the exact text sealed to them (base64; "" when not sealed)."""

    redacted: str
    digest: str
    sealed: str = ""


def seal_filter(key: SealKey, nonce: bytes, text: str) -> str:
    """The exact filter and its digest's nonce sealed to the officers, as `sealed_filter` logs it."""
    plain = json.dumps({"nonce": nonce.hex(), "text": text}, ensure_ascii=False, sort_keys=True)
    return base64.b64encode(key.seal(plain.encode("utf-8"))).decode("ascii")


def open_filter(key: OpenKey, logged: LoggedFilter) -> str:
    """The exact filter an officer's key opens from a logged filter, checked against the logged digest.

    CannotOpen for another key; VerificationError if what opens is not the filter the digest binds.
    """
    try:
        sealed = base64.b64decode(logged.sealed, validate=True)
    except binascii.Error:
        raise VerificationError("the logged sealed filter is not base64 (the entry was altered)") from None
    plain = key.open(sealed)
    try:
        obj = json.loads(plain)
        nonce, text = bytes.fromhex(obj["nonce"]), obj["text"]
    except (ValueError, KeyError, TypeError):
        raise VerificationError("the sealed filter opened but is not a sealed filter") from None
    if not isinstance(text, str) or filter_digest(nonce, text) != logged.digest:
        raise VerificationError("the sealed filter is not the filter the logged digest binds (the department "
                                "ran the digest's filter): the gateway sealed another text")
    return text


@dataclass
class SideParams:
    """What the log binds for one side: its key field, filter and encrypted value fields."""

    key_field: str = ""
    filter: LoggedFilter | None = None
    value_fields: tuple[str, ...] = ()
    # A noisy sum: each value field's declared (min, max), by field name.
    bounds: dict[str, tuple[int, int]] = field(default_factory=dict)


class FieldRef(NamedTuple):
    dataset: str   # qualified
    field: str


class FieldForm(NamedTuple):
    """How a disclosed field may leave (plaintext | masked) and its level as the gateway holds it."""

    form: str
    level: str


@dataclass
class QueryParams:
    """A query entry's parameters, typed. Filled as a query is planned; `encode` gives the logged form."""

    sides: dict[SideRef, SideParams] = field(default_factory=dict)
    forms: dict[FieldRef, FieldForm] = field(default_factory=dict)
    mode: str = ""
    min_set_size: int | None = None
    limit: int | None = None
    limit_requested: int | None = None
    min_aggregate: int | None = None
    max_match_rows: int | None = None
    paillier_key_sha256: str = ""
    paillier_key_bits: int | None = None
    weights: tuple[int, int] | None = None
    noise_epsilon_micro: int | None = None
    version: int = PARAMS_VERSION

    def side(self, dataset: str, role: str = "") -> SideParams:
        """The side's parameters, created empty if none are logged (what a reader compares against)."""
        return self.sides.setdefault(SideRef(dataset, role), SideParams())

    def logged_side(self, dataset: str, role: str = "") -> SideParams:
        """The side's parameters as logged, without adding the side."""
        return self.sides.get(SideRef(dataset, role)) or SideParams()

    def forms_of(self, dataset: str) -> dict[str, FieldForm]:
        """The disclosed fields of `dataset`, by name."""
        return {ref.field: form for ref, form in self.forms.items() if ref.dataset == dataset}

    def encode(self) -> dict[str, str]:
        """The flat string map the audit entry holds."""
        out = {VERSION_KEY: str(self.version)}
        for ref, side in self.sides.items():
            if side.key_field:
                out[f"key.{ref.suffix}"] = side.key_field
            if side.filter is not None:
                out[f"filter.{ref.suffix}"] = side.filter.redacted
                out[f"filter_digest.{ref.suffix}"] = side.filter.digest
                if side.filter.sealed:
                    out[f"sealed_filter.{ref.suffix}"] = side.filter.sealed
            if side.value_fields:
                out[f"values.{ref.suffix}"] = ",".join(side.value_fields)
            if side.bounds:
                out[f"bounds.{ref.suffix}"] = ",".join(f"{name}:{low}:{high}"
                                                       for name, (low, high) in side.bounds.items())
        for fref, form in self.forms.items():
            out[f"form.{fref.dataset}.{fref.field}"] = form.form
            out[f"level.{fref.dataset}.{fref.field}"] = form.level
        if self.mode:
            out["mode"] = self.mode
        for name in _INTEGERS:
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value)
        if self.paillier_key_sha256:
            out["paillier_key_sha256"] = self.paillier_key_sha256
        if self.weights is not None:
            out["weights"] = f"{self.weights[0]},{self.weights[1]}"
        if self.noise_epsilon_micro is not None:
            out["noise_epsilon_micro"] = str(self.noise_epsilon_micro)
        return out


def decode(params: Mapping[str, str]) -> QueryParams:
    """The typed parameters of a logged query; TicketRefused for an unknown version, key or malformed value."""
    version = params.get(VERSION_KEY, "1")  # logged before the schema: version 1
    if version not in READABLE_VERSIONS:
        raise TicketRefused(f"the audit entry's parameters are version {version[:16]!r}; this adapter reads "
                            f"versions {' and '.join(READABLE_VERSIONS)}: upgrade it to the gateway's release")
    out = QueryParams(version=int(version))
    heads = (("key", "values", "filter", "filter_digest") + (("sealed_filter",) if out.version >= 2 else ())
             + (("bounds",) if out.version >= 3 else ()))
    filters: dict[SideRef, dict[str, str]] = {}
    for key, value in params.items():
        if key == VERSION_KEY:
            continue
        head, _, rest = key.partition(".")
        if head in heads:
            ref = _side_ref(key, rest, sided=head in ("key", "values", "bounds"))
            if head == "key":
                out.side(*ref).key_field = value
            elif head == "values":
                out.side(*ref).value_fields = tuple(value.split(","))
            elif head == "bounds":
                out.side(*ref).bounds = _bounds(key, value)
            else:
                filters.setdefault(ref, {})[head] = value
        elif head in ("form", "level"):
            fref = _field_ref(key, rest)
            form = out.forms.get(fref, FieldForm("", ""))
            out.forms[fref] = form._replace(**{head: value})
        elif key == "mode":
            out.mode = value
        elif key in _INTEGERS:
            setattr(out, key, _integer(key, value))
        elif key == "paillier_key_sha256":
            out.paillier_key_sha256 = value
        elif key == "weights":
            left, _, right = value.partition(",")
            out.weights = (_integer(key, left), _integer(key, right))
        elif key == "noise_epsilon_micro" and out.version >= 3:
            out.noise_epsilon_micro = _integer(key, value)
        else:
            raise TicketRefused(f"the audit entry holds an unknown parameter '{key[:80]}' "
                                f"(params_version {out.version})")
    for ref, parts in filters.items():
        if not {"filter", "filter_digest"} <= set(parts):
            raise TicketRefused(f"the audit entry logs a filter of '{ref.dataset}' without its text or digest")
        out.side(*ref).filter = LoggedFilter(parts["filter"], parts["filter_digest"], parts.get("sealed_filter", ""))
    for fref, form in out.forms.items():
        if not (form.form and form.level):
            raise TicketRefused(f"the audit entry logs field '{fref.field}' without its form or level")
    return out


def _side_ref(key: str, rest: str, sided: bool) -> SideRef:
    parts = rest.split(".")
    if len(parts) == 3 and parts[0] in SIDES:
        return SideRef(f"{parts[1]}.{parts[2]}", parts[0])
    if len(parts) == 2 and not sided:
        return SideRef(rest)
    raise TicketRefused(f"the audit entry holds a malformed parameter key '{key[:80]}'")


def _field_ref(key: str, rest: str) -> FieldRef:
    parts = rest.split(".")
    if len(parts) != 3 or not all(parts):
        raise TicketRefused(f"the audit entry holds a malformed parameter key '{key[:80]}'")
    return FieldRef(f"{parts[0]}.{parts[1]}", parts[2])


def _bounds(key: str, value: str) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for item in value.split(","):
        parts = item.split(":")
        if len(parts) != 3 or not parts[0]:
            raise TicketRefused(f"the audit entry's parameter '{key[:80]}' is not field:min:max")
        out[parts[0]] = (_integer(key, parts[1]), _integer(key, parts[2]))
    return out


def _integer(key: str, value: str) -> int:
    if not _INTEGER.fullmatch(value):
        raise TicketRefused(f"the audit entry's parameter '{key}' is not an integer")
    return int(value)
