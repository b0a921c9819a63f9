"""Issue 15, part 4: the subject-use store (keyed references only), covert-case rules, and the report's record."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest

import support
from fedgate.adapters.config import AdapterConfig
from fedgate.adapters.pool_tasks import tokens_for
from fedgate.adapters.ref_sets import RefSet
from fedgate.adapters.subject_refs import KEY_FILE, SubjectRefs, refs_of_id
from fedgate.adapters.subject_rules import DAY_S, CovertRule, SubjectReportSettings
from fedgate.adapters.subject_uses import STORE_FILE, SubjectUse, SubjectUses
from fedgate.adapters.subject_report import make_report
from fedgate.core.errors import ConfigError, InvalidInput, NotFound
from fedgate.crypto.ids import make_resident_id, make_uscc
from fedgate.crypto.psi import hmac_tokens as keyed_tokens

SECRET = bytes(range(32))
ALICE = support.SUPERVISOR.spiffe_id
BOB = "spiffe://fedgate/supervisor/pub/bob"
T0 = 1_700_000_000.0


def _refs(*usccs: str, secret: bytes = SECRET) -> RefSet:
    refs = SubjectRefs(secret, ["uscc"])
    refs.add_rows([(u,) for u in usccs])
    return refs.refs()


def _use(query_id: str, covered: RefSet, disclosed: RefSet | None = None, case: str = "C-1", at: float = T0,
         subject: str = ALICE, action: str = "query.count", dataset: str = "hrss.subsidies",
         fields: tuple[str, ...] = ()) -> SubjectUse:
    return SubjectUse("2026-01-01T00:00:00Z", at, query_id, 1, action, dataset, "", subject, "p", case, fields,
                      covered, disclosed if disclosed is not None else _refs())


def test_an_identifier_is_referenced_in_its_normalised_form_and_invalid_ones_name_nobody() -> None:
    code = support.uscc(3)
    [(kind, ref)] = refs_of_id(SECRET, code)
    assert kind == "uscc"
    # A clerk's spacing and case make the same reference; a wrong check character makes none.
    assert _refs(f" {code[:9].lower()} {code[9:]} ").values.tolist() == [ref]
    assert len(_refs(code[:-1] + ("0" if code[-1] != "0" else "1"), "", "not an id")) == 0
    resident = make_resident_id("110101", __import__("datetime").date(1990, 1, 2), 7)
    assert [k for k, _ in refs_of_id(SECRET, resident)] == ["resident_id"]
    # Another department's key makes another reference: the references mean nothing outside it.
    assert refs_of_id(bytes(32), code) != refs_of_id(SECRET, code)


def test_an_invalid_identifier_is_refused_without_repeating_it() -> None:
    with pytest.raises(InvalidInput) as err:
        refs_of_id(SECRET, "91330100MA2000003Z")
    assert "91330100MA2000003Z" not in str(err.value) and "neither" in str(err.value)


def test_the_workers_make_the_same_references_as_the_store() -> None:
    rows = [(support.uscc(i),) for i in range(1, 6)] + [("bad",), (None,)]
    chunk = tokens_for(keyed_tokens, b"k" * 32, "uscc", rows, False, subject_key=SECRET)
    refs = SubjectRefs(SECRET, ["uscc"])
    refs.add_digests(chunk.subject_refs)
    assert refs.refs() == _refs(*(r[0] for r in rows if r[0]))
    assert len(refs.refs()) == 5
    assert tokens_for(keyed_tokens, b"k" * 32, "uscc", rows, False).subject_refs == b""  # off without a key


def test_the_store_finds_exactly_the_uses_that_covered_a_record(tmp_path: Path) -> None:
    store = SubjectUses.open(tmp_path)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    a, b, c = support.uscc(1), support.uscc(2), support.uscc(3)
    key = store.secret
    store.record(_use("q1", _refs(a, b, secret=key)))
    store.record(_use("q2", _refs(b, c, secret=key), _refs(b, secret=key), action="query.disclose",
                      fields=("uscc:masked",)))
    store.record(_use("q3", _refs(c, secret=key), dataset="hrss.pensions"))
    [(_, ref_b)] = refs_of_id(store.secret, b)
    found = store.find([ref_b])
    assert [(u.query_id, u.disclosed, u.fields) for u in found] == [("q1", False, ()), ("q2", True, ("uscc:masked",))]
    [(_, ref_c)] = refs_of_id(store.secret, c)
    assert [u.query_id for u in store.find([ref_c])] == ["q2", "q3"]
    assert [u.query_id for u in store.find([ref_c], "hrss.pensions")] == ["q3"]
    [(_, ref_d)] = refs_of_id(store.secret, support.uscc(4))
    assert store.find([ref_d]) == []
    store.close()
    # The store holds references only: no identifier, in any form, is in its file.
    data = (tmp_path / STORE_FILE).read_bytes()
    assert not any(u.encode() in data for u in (a, b, c))
    # A reader never creates the key: without it there is nothing to read.
    with pytest.raises(NotFound):
        SubjectUses.open(tmp_path / "elsewhere", create_key=False)


def test_an_empty_or_large_set_is_searched_by_bisection(tmp_path: Path) -> None:
    store = SubjectUses.open(tmp_path)
    big = RefSet(np.arange(1, 200_001, dtype=np.uint64) * np.uint64(92_233_720_368))
    store.record(_use("big", big))
    store.record(_use("empty", _refs()))
    assert [u.query_id for u in store.find([int(big.values[12_345])])] == ["big"]
    assert store.find([int(big.values[12_345]) + 1]) == []


def test_covert_rules_delay_or_withhold_and_only_their_cases() -> None:
    delayed = CovertRule("covert", r"^JC-", delay_days=30)
    forever = CovertRule("sealed", r"SEALED", agency="pub")
    settings = SubjectReportSettings(rules=(delayed, forever))
    assert settings.rule_for("JC-7", "dcb", T0, T0 + 29 * DAY_S) is delayed
    assert settings.rule_for("JC-7", "dcb", T0, T0 + 30 * DAY_S) is None  # the delay has passed
    assert settings.rule_for("C-JC-7", "dcb", T0, T0) is None
    assert settings.rule_for("X-SEALED", "pub", T0, T0 + 10_000 * DAY_S) is forever
    assert settings.rule_for("X-SEALED", "dcb", T0, T0) is None  # another agency's case of that name


def _config(tmp_path: Path, section: str = "") -> AdapterConfig:
    cfg = tmp_path / "dept.toml"
    cfg.write_text(support.adapter_toml("hrss", "127.0.0.1:1", tmp_path, support.SUBSIDIES_DECL.format(path="s.csv"))
                   + section)
    return AdapterConfig.load(cfg)


RULES = """
[subject_reports]
tell_withheld = true
[[subject_reports.rules]]
name = "covert"
case = "^JC-"
delay_days = 30
"""


def test_the_section_is_read_and_checked(tmp_path: Path) -> None:
    assert _config(tmp_path).subject_reports == SubjectReportSettings()
    loaded = _config(tmp_path, RULES).subject_reports
    assert loaded.tell_withheld and loaded.record and [(r.name, r.case, r.delay_days) for r in loaded.rules] == \
        [("covert", "^JC-", 30)]
    for bad, message in ((RULES.replace("^JC-", "(unclosed"), "not a regular expression"),
                         (RULES.replace("delay_days = 30", "delay_days = 0"), "at least 1"),
                         (RULES + '[[subject_reports.rules]]\nname = "covert"\ncase = "x"\n', "name of its own"),
                         (RULES.replace("tell_withheld", "tell_everyone"), "unknown key")):
        with pytest.raises(ConfigError, match=message):
            _config(tmp_path, bad)


def test_a_report_holds_back_covert_cases_until_their_delay_and_is_itself_recorded(tmp_path: Path) -> None:
    config = _config(tmp_path, RULES)
    store = SubjectUses.open(config.data_dir)
    subject = support.uscc(5)
    key = store.secret
    store.record(_use("q1", _refs(subject, secret=key), case="C-1", at=T0))
    store.record(_use("q2", _refs(subject, secret=key), case="JC-9", at=T0, subject=BOB))
    store.record(_use("q3", _refs(support.uscc(6), secret=key), case="C-3", at=T0))
    store.close()
    early = make_report(config, subject, now=T0 + DAY_S)
    assert [e.query_id for e in early.entries] == ["q1"] and early.withheld == 1
    assert early.entries[0].form == "counted (aggregate)" and early.entries[0].agency == "dcb"
    late = make_report(config, subject.lower(), "subsidies", now=T0 + 31 * DAY_S)
    assert [(e.query_id, e.agency, e.case_number) for e in late.entries] == [("q1", "dcb", "C-1"),
                                                                             ("q2", "pub", "JC-9")]
    with pytest.raises(NotFound):
        make_report(config, subject, "pensions")
    store = SubjectUses.open(config.data_dir, create_key=False)
    reports = store.reports()
    store.close()
    assert [(r[2], r[3], r[4], r[5]) for r in reports] == [("", 1, 1, "covert:1"), ("hrss.subsidies", 2, 0, "")]
    [(_, ref)] = refs_of_id(store.secret, subject)
    assert reports[0][1] == f"uscc:{ref:016x}"
    data = b"".join(p.read_bytes() for p in config.data_dir.iterdir() if p.is_file())
    assert subject.encode() not in data and subject.lower().encode() not in data
    # Without tell_withheld the report says nothing of what was held back.
    quiet = make_report(_config(tmp_path, RULES.replace("tell_withheld = true", "")), subject, now=T0)
    assert "withheld" not in quiet.to_json() and "withheld" in early.to_json()
    assert make_uscc("91330100MA2000005") == subject
