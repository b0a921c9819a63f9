"""The audit-parameter schema: each query kind's params round-trip, old entries decode, tampering is noticed."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedgate.adapters.disclosure import Ask, check_ask
from fedgate.core.audit_entry import AuditEntry, utc_now
from fedgate.core.classification import default_levels
from fedgate.crypto.ticket import TicketRefused
from fedgate.core.datasets import DatasetDecl, FieldDecl, FieldGrant
from fedgate.query.audit_params import (
    FieldForm,
    FieldRef,
    LoggedFilter,
    QueryParams,
    decode,
    filter_digest,
    paillier_key_digest,
)

DIGEST = "ab" * 32


def _count() -> QueryParams:
    p = QueryParams(min_aggregate=5)
    p.side("hrss.pensions").filter = LoggedFilter("district = ?", DIGEST)
    return p


def _disclose() -> QueryParams:
    p = QueryParams(min_set_size=100, limit=3, limit_requested=10)
    p.side("hrss.pensions").filter = LoggedFilter("district = ?", DIGEST)
    p.forms[FieldRef("hrss.pensions", "name")] = FieldForm("masked", "L3")
    p.forms[FieldRef("hrss.pensions", "district")] = FieldForm("plaintext", "L2")
    return p


def _match() -> QueryParams:
    p = QueryParams(mode="ecdh", min_set_size=100, limit=100, max_match_rows=5_000_000)
    p.side("hrss.subsidies", "left").key_field = "uscc"
    p.side("hrss.subsidies", "right").key_field = "uscc"  # both sides the same dataset
    p.side("hrss.subsidies", "right").filter = LoggedFilter("status in (?, ?)", DIGEST)
    p.forms[FieldRef("hrss.subsidies", "uscc")] = FieldForm("masked", "L3")
    return p


def _sum() -> QueryParams:
    p = QueryParams(mode="keyed", min_set_size=100, limit=1, min_aggregate=5, max_match_rows=50,
                    paillier_key_sha256=DIGEST, paillier_key_bits=2048)
    p.side("hrss.subsidies", "left").key_field = "uscc"
    p.side("hrss.subsidies", "left").value_fields = ("amount_fen", "employees")
    p.side("samr.companies", "right").key_field = "uscc"
    return p


def _compare() -> QueryParams:
    p = _sum()
    p.min_aggregate = None
    p.weights = (5, 6)
    p.side("tax.returns", "right").value_fields = ("insured",)
    return p


def _noisy_sum() -> QueryParams:
    p = _sum()
    p.side("hrss.subsidies", "left").bounds = {"amount_fen": (0, 50_000_000), "employees": (-5, 20_000)}
    p.noise_epsilon_micro = 125_000
    return p


KINDS = {"count": _count, "disclose": _disclose, "match": _match, "sum": _sum, "compare": _compare,
         "noisy-sum": _noisy_sum}


def test_a_noisy_sums_bounds_and_epsilon_are_logged_in_version_3_only() -> None:
    encoded = _noisy_sum().encode()
    assert encoded["bounds.left.hrss.subsidies"] == "amount_fen:0:50000000,employees:-5:20000"
    assert encoded["noise_epsilon_micro"] == "125000"
    with pytest.raises(TicketRefused, match="unknown parameter 'bounds.left.hrss.subsidies'"):
        decode({**encoded, "params_version": "2"})


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_query_kind_round_trips(kind: str) -> None:
    params = KINDS[kind]()
    encoded = params.encode()
    assert encoded["params_version"] == "3"
    assert decode(encoded) == params


def test_key_formats_are_the_ones_officers_logs_hold() -> None:
    encoded = _disclose().encode()
    assert encoded == {"params_version": "3", "filter.hrss.pensions": "district = ?",
                       "filter_digest.hrss.pensions": DIGEST, "form.hrss.pensions.name": "masked",
                       "level.hrss.pensions.name": "L3", "form.hrss.pensions.district": "plaintext",
                       "level.hrss.pensions.district": "L2", "min_set_size": "100", "limit": "3",
                       "limit_requested": "10"}
    sums = _compare().encode()
    assert (sums["key.left.hrss.subsidies"], sums["values.left.hrss.subsidies"]) == ("uscc", "amount_fen,employees")
    assert (sums["weights"], sums["paillier_key_bits"], sums["mode"]) == ("5,6", "2048", "keyed")


_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@given(dept=_names, name=_names, field=_names, role=st.sampled_from(["", "left", "right"]),
       form=st.sampled_from(["plaintext", "masked"]), limit=st.integers(0, 10_000),
       minimum=st.none() | st.integers(0, 10**9), text=st.text(max_size=40))
def test_any_params_round_trip(dept: str, name: str, field: str, role: str, form: str, limit: int,
                               minimum: int | None, text: str) -> None:
    dataset = f"{dept}.{name}"
    params = QueryParams(limit=limit, min_aggregate=minimum)
    params.side(dataset, role).filter = LoggedFilter(text, filter_digest(b"n", text))
    if role:
        params.side(dataset, role).key_field = field
    params.forms[FieldRef(dataset, field)] = FieldForm(form, "L2")
    assert decode(params.encode()) == params


def test_an_entry_logged_before_the_schema_decodes_as_version_1() -> None:
    old = {"form.hrss.pensions.name": "masked", "level.hrss.pensions.name": "L3", "min_set_size": "100",
           "limit": "5"}
    params = decode(old)
    assert params.version == 1 and params.min_set_size == 100 and params.limit == 5
    assert params.forms_of("hrss.pensions") == {"name": FieldForm("masked", "L3")}
    assert params.max_match_rows is None  # the department then bounds tokens by the old default


@pytest.mark.parametrize("params, words", [
    ({"params_version": "4"}, "version '4'"),
    ({"params_version": "1", "colour": "red"}, "unknown parameter 'colour'"),
    ({"key.hrss.pensions": "uscc"}, "malformed parameter key"),     # a key needs its side
    ({"form.hrss.pensions": "masked"}, "malformed parameter key"),  # and a form its field
    ({"min_set_size": "ten"}, "'min_set_size' is not an integer"),
    ({"limit": "٣"}, "'limit' is not an integer"),                 # a non-ASCII digit
    ({"filter.hrss.pensions": "a = ?"}, "without its text or digest"),
    ({"form.hrss.pensions.name": "masked"}, "without its form or level"),
], ids=["version", "unknown-key", "key-without-side", "form-without-field", "not-int", "unicode-digit",
        "filter-without-digest", "form-without-level"])
def test_malformed_or_unknown_params_are_refused(params: dict[str, str], words: str) -> None:
    with pytest.raises(TicketRefused) as err:
        decode(params)
    assert words in str(err.value)


# --- check_ask: the adapter's re-check compares the decoded entry with the request ---

PENSIONS = DatasetDecl("hrss", "pensions", (FieldDecl.build("resident_id", "string", "L4", "resident_id"),
                                            FieldDecl.build("name", "string", "L3"),
                                            FieldDecl.build("district", "string", "L2")))
NONCE = b"\x01" * 16
FILTER = "district = '西湖区'"


def _entry(params: QueryParams, action: str = "query.disclose") -> AuditEntry:
    return AuditEntry(utc_now(), "spiffe://fedgate/supervisor/dcb/alice", "supervisor", action, "/m", "allow",
                      "STARTED", datasets=("hrss.pensions",), query_id=secrets.token_hex(16),
                      params=tuple(sorted(params.encode().items())))


def _logged() -> QueryParams:
    p = QueryParams(min_set_size=100, limit=5)
    p.side("hrss.pensions").filter = LoggedFilter("district = ?", filter_digest(NONCE, FILTER))
    p.forms[FieldRef("hrss.pensions", "name")] = FieldForm("masked", "L3")
    return p


ASK = Ask("query.disclose", PENSIONS, (FieldGrant("name", "L3", "masked"),), FILTER, NONCE, 100, limit=5)


def test_check_ask_passes_the_logged_request_and_returns_its_params() -> None:
    assert check_ask(_entry(_logged()), ASK, default_levels()) == _logged()


def _tampered(change: str) -> QueryParams:
    p = _logged()
    if change == "filter":
        p.side("hrss.pensions").filter = LoggedFilter("district = ?", filter_digest(NONCE, "district = 'x'"))
    elif change == "min_set_size":
        p.min_set_size = 2
    elif change == "limit":
        p.limit = 5000
    elif change == "form":
        p.forms[FieldRef("hrss.pensions", "name")] = FieldForm("plaintext", "L3")
    elif change == "extra-field":
        p.forms[FieldRef("hrss.pensions", "district")] = FieldForm("plaintext", "L2")
    return p


@pytest.mark.parametrize("change, words", [
    ("filter", "filter sent is not the one"),
    ("min_set_size", "minimum set size sent"),
    ("limit", "row limit sent"),
    ("form", "form or level differs"),
    ("extra-field", "fields asked for are not the ones"),
])
def test_a_tampered_param_is_noticed_by_check_ask(change: str, words: str) -> None:
    with pytest.raises(TicketRefused) as err:
        check_ask(_entry(_tampered(change)), ASK, default_levels())
    assert words in str(err.value)


def test_check_ask_refuses_a_paillier_key_other_than_the_logged_one() -> None:
    p = QueryParams(mode="keyed", min_set_size=100, paillier_key_sha256=paillier_key_digest(b"logged key"))
    p.side("hrss.pensions", "left").key_field = "resident_id"
    p.side("hrss.pensions", "left").value_fields = ("amount",)
    ask = Ask("query.sum", PENSIONS, (), "", b"", 100, "resident_id", ("amount",), b"other key", "left",
              mode="keyed")
    with pytest.raises(TicketRefused, match="Paillier key sent"):
        check_ask(_entry(p, "query.sum"), ask, default_levels())
    check_ask(_entry(p, "query.sum"), Ask(**{**ask.__dict__, "paillier_key": b"logged key"}), default_levels())


def test_check_ask_refuses_more_than_the_department_ceiling_even_if_logged() -> None:
    p = _logged()
    p.forms = {FieldRef("hrss.pensions", "resident_id"): FieldForm("plaintext", "L4")}
    ask = Ask("query.disclose", PENSIONS, (FieldGrant("resident_id", "L4", "plaintext"),), FILTER, NONCE, 100,
              limit=5)
    with pytest.raises(TicketRefused, match="at most as aggregate, not plaintext"):
        check_ask(_entry(p), ask, default_levels())


def test_check_ask_refuses_an_unknown_params_version() -> None:
    entry = _entry(_logged())
    forged = AuditEntry(**{**entry.__dict__, "params": tuple(sorted({**dict(entry.params),
                                                                     "params_version": "9"}.items()))})
    with pytest.raises(TicketRefused, match="version '9'"):
        check_ask(forged, ASK, default_levels())
