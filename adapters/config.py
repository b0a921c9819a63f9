"""Adapter configuration (`dept.toml`): the department, its gateway, its datasets and their sources."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fedgate.adapters.row_history import DEFAULT_WINDOW_DAYS
from fedgate.adapters.sources import Source, SourceSpec
from fedgate.adapters.sources.kinds import open_source, read_spec
from fedgate.adapters.subject_rules import CovertRule, SubjectReportSettings
from fedgate.server.worker_pool import default_workers
from fedgate.core.classification import Levels, default_levels
from fedgate.crypto.ticket import DEFAULT_CLOCK_SKEW_S
from fedgate.core.datasets import DatasetDecl, FieldDecl
from fedgate.core.errors import ConfigError, FedgateError, InvalidInput
from fedgate.server.tls import TlsFiles
from fedgate.core.tomlconfig import Table
from fedgate.crypto.checkpoint import parse_verifier_key
from fedgate.query.department_rules import CRITERIA, DEFAULT_APPROVAL_TTL_S, NO_RULES, DepartmentRule, DepartmentRules

EXAMPLE = """\
# fedgate department adapter configuration. Paths are relative to this file.
department = "hrss"                     # must match the department in the certificate
display_name = "人力资源和社会保障局"      # default: the department code
listen = "127.0.0.1:0"                  # host:port; port 0 picks a free port
# health_listen = "0.0.0.0:8081"          # a plaintext port serving only grpc.health.v1, for probes without mTLS
#                                          # (default: off)
# advertise = "adapter.hrss.example:7443"  # what the gateway dials; default: listen host + bound port
#                                          # (required when listening on all interfaces)
gateway = "127.0.0.1:50051"             # the gateway's host:port
gateway_log_key = "certs/log-signing.vkey"   # the gateway's pinned log key (copied out of band)
# data_dir = "hrss-adapter-data"            # disclosure log, matching key, spans (default: <department>-adapter-data)
# policy_dir = "policies"                   # levels.toml with this department's ceilings (default: shipped)
# register_timeout_s = 60                   # give up if the gateway is unreachable this long at start-up
#                                           # (default: keep retrying, with backoff, and say so in the log)
# heartbeat_s = 30                          # renew the registration (and report row counts) this often
# workers = 2                               # processes for hashing, blinding, encryption (default: all cores; 0: threads)
# clock_skew_s = 30                         # accept tickets issued up to this far in this host's future
#                                           (its clock behind the gateway's); refusals name the clocks
# difference_window_days = 90               # how long each agency's answered row sets are kept for the
#                                           # difference check (an answer whose rows differ from an earlier one
#                                           # of the same agency by fewer than k rows is refused)

[tls]
ca = "certs/ca.pem"
cert = "certs/dept-hrss.pem"
key = "certs/dept-hrss.key"
# The CA's revocation list (`fedgate certs revoke` / `certs crl` write it); re-read when it changes.
# Without it no caller is checked against one.
crl = "certs/crl.pem"

# The department's own rules (optional): requests for its data it refuses, or that wait for its approval,
# whatever the gateway's policy allows. An empty criterion matches anything; the strictest matching rule
# wins (refuse, then approve). Criteria: datasets, levels (of the fields used), forms (plaintext, masked,
# aggregate), kinds (count disclose match sum compare), agencies, aggregate = "exact" | "noisy".
[[rules]]
name = "no-plaintext-to-tax"
effect = "refuse"
forms = ["plaintext"]
agencies = ["tax"]

# Approval: the approvers' verifier keys (`fedgate approvals keygen NAME`) and how long a request waits.
# [approvals]
# keys = ["approvers/hrss-zhang.vkey", "approvers/hrss-li.vkey"]
# ttl_hours = 72
#
# [[rules]]
# name = "l4-two-person"
# effect = "approve"            # the request waits until `approvers` different approvers approve it
# levels = ["L4"]
# approvers = 2

[subject_reports]        # `fedgate department subject-report`: which cases used a resident's or company's records
record = true            # record whose records each answer covered (keyed hashes only, data_dir/subject_uses.db)
tell_withheld = false    # say in a report how many entries covert-case rules held back (default: silent)
# [[subject_reports.rules]]   # a covert-case rule: its cases' entries are held back from reports
# name = "covert"             # reports record how many entries each rule held back
# case = "^JC-"               # a regular expression searched in the case number
# agency = "pub"              # only this asking agency's cases (default: any)
# delay_days = 180            # shown once this many days have passed since the use (omit: withheld for good)

[[datasets]]
name = "subsidies"
description = "稳岗补贴发放记录"
source = { kind = "csv", path = "data/hrss/subsidies.csv" }
# source = { kind = "sqlite", path = "data/hrss.db", table = "subsidies" }
# source = { kind = "sql", url = "postgresql+psycopg://user@db/hrss", table = "subsidies" }
# table = "dept_a.subsidies" names a table outside the default schema; a view is named like a table.
# Spark (pip install 'fedgate[spark]', Java 17): a catalog (Hive) table, a Parquet/ORC path, or a JDBC table.
# source = { kind = "spark", table = "warehouse.subsidies", conf = { "spark.sql.catalogImplementation" = "hive" } }
# source = { kind = "spark", path = "data/hrss/subsidies.parquet", format = "parquet" }   # or format = "orc"
# source = { kind = "spark", jdbc = { url = "jdbc:postgresql://db/hrss", table = "subsidies", password_env = "HRSS_DB_PW" } }
#          (jdbc also takes user = "reader"; the password is read from the environment variable password_env names)
# master = "spark://spark-master:7077" (or "yarn", "k8s://https://…"; default local[<cores>]), app_name = "…",
# conf = { "spark.executor.memory" = "2g", … } go in the same source table; every Spark dataset shares them.

[[datasets.fields]]
name = "uscc"
type = "string"          # string | int | date (amounts: int, in fen); checked against the source at start
level = "L3"             # a level from policies/levels.toml
key = "uscc"             # only on key fields: resident_id | uscc | plain

[[datasets.fields]]
name = "amount_fen"
type = "int"
level = "L3"
min = 0                  # int fields: the range noisy sums clamp values into (both or neither)
max = 2000000
"""


@dataclass(frozen=True)
class DatasetConfig:
    decl: DatasetDecl
    source: SourceSpec

    def open_source(self) -> Source:
        return open_source(self.source, self.decl.field_types)


@dataclass(frozen=True)
class AdapterConfig:
    department: str
    display_name: str
    listen: str
    advertise: str
    gateway: str
    tls: TlsFiles
    datasets: tuple[DatasetConfig, ...]
    gateway_log_key: Path
    data_dir: Path
    levels: Levels
    register_timeout_s: int | None = None  # None: keep retrying until the gateway answers
    workers: int = 0
    heartbeat_s: int = 30
    clock_skew_s: int = DEFAULT_CLOCK_SKEW_S
    difference_window_days: int = DEFAULT_WINDOW_DAYS
    rules: DepartmentRules = NO_RULES
    subject_reports: SubjectReportSettings = SubjectReportSettings()
    health_listen: str = ""  # "": no plaintext health port

    @classmethod
    def load(cls, path: Path, levels: Levels | None = None) -> AdapterConfig:
        """Read and check dept.toml; ConfigError names the file and the key."""
        table = Table.load(path)
        policy_dir = table.path("policy_dir", None)
        levels = levels or (Levels.from_file(policy_dir / "levels.toml") if policy_dir else default_levels())
        department = table.text("department")
        config = cls(
            department=department,
            display_name=table.text("display_name", department),
            listen=table.address("listen", listen=True),
            advertise=table.address("advertise", ""),
            health_listen=table.address("health_listen", "", listen=True),
            gateway=table.address("gateway"),
            gateway_log_key=table.path("gateway_log_key"),
            data_dir=table.path("data_dir", None) or (path.parent / f"{department}-adapter-data").resolve(),
            register_timeout_s=table.duration("register_timeout_s", None),
            heartbeat_s=table.duration("heartbeat_s", 30),
            levels=levels,
            workers=table.integer("workers", default_workers()),
            clock_skew_s=table.duration("clock_skew_s", DEFAULT_CLOCK_SKEW_S),
            difference_window_days=_window_days(table),
            tls=TlsFiles.from_table(table.table("tls")),
            datasets=tuple(_dataset(t, department, levels) for t in table.tables("datasets")),
            rules=_rules(table),
            subject_reports=_subject_reports(table),
        )
        table.done()
        _check_reachable(path, config.listen, config.advertise)
        names = [d.decl.name for d in config.datasets]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(str(path), f"dataset '{name}' is declared twice")
        return config


def _window_days(table: Table) -> int:
    days: int = table.integer("difference_window_days", DEFAULT_WINDOW_DAYS)
    if days < 1:
        raise table.error("difference_window_days", "must be at least 1 (the days answered row sets are kept)")
    return days


def _rules(table: Table) -> DepartmentRules:
    """The department's own rules and its approvers' keys ([[rules]], [approvals])."""
    keys: list[str] = []
    ttl_s = DEFAULT_APPROVAL_TTL_S
    if table.has("approvals"):
        approvals = table.table("approvals")
        for path in approvals.texts("keys", []):
            file = (approvals.file.parent / path).resolve()
            try:
                text = file.read_text(encoding="utf-8").strip()
                parse_verifier_key(text)
            except OSError as exc:
                raise approvals.error("keys", f"cannot read approver key {path}: {exc.strerror}") from None
            except FedgateError as exc:
                raise approvals.error("keys", f"{path} is not a verifier key: {exc}") from None
            keys.append(text)
        ttl_s = int(approvals.number("ttl_hours", DEFAULT_APPROVAL_TTL_S / 3600) * 3600)
        approvals.done()
    rules = []
    for t in table.tables("rules", []):
        try:
            rules.append(DepartmentRule.build(t.text("name"), t.text("effect"),
                                              {k: t.texts(k, []) for k in CRITERIA},
                                              t.text("aggregate", "any"), t.integer("approvers", 1)))
        except InvalidInput as exc:
            raise ConfigError(str(t.file), str(exc)) from None
        t.done()
    try:
        return DepartmentRules(tuple(rules), tuple(keys), ttl_s)
    except InvalidInput as exc:
        raise ConfigError(str(table.file), str(exc)) from None


WILDCARD_HOSTS = ("", "0.0.0.0", "[::]", "::")


def _check_reachable(path: Path, listen: str, advertise: str) -> None:
    """The gateway dials what the adapter registers: listen's host and bound port, or `advertise`."""
    host = listen.rpartition(":")[0]
    if not advertise and host in WILDCARD_HOSTS:
        raise ConfigError(str(path), f"key 'listen' ({listen!r}) listens on all interfaces, so the gateway cannot "
                                     "be told where to dial: set key 'advertise' to the host:port it reaches "
                                     "this adapter at, or listen on one address (e.g. 127.0.0.1:7443)")


def _bounds(field: Table, dataset: str) -> tuple[int, int] | None:
    """A field's declared `min` and `max` (both or neither)."""
    has_min, has_max = field.has("min"), field.has("max")
    if has_min != has_max:
        raise ConfigError(str(field.file), f"dataset '{dataset}' field '{field.text('name')}': declare both "
                                           "`min` and `max` (the range a noisy sum clamps values into), or neither")
    return (field.integer("min"), field.integer("max")) if has_min else None


def _dataset(table: Table, department: str, levels: Levels) -> DatasetConfig:
    name = table.text("name")
    description = table.text("description", "")
    source = read_spec(table.table("source"))
    fields = []
    for ft in table.tables("fields"):
        try:
            fields.append(FieldDecl.build(ft.text("name"), ft.text("type"), ft.text("level"),
                                          ft.text("key", None), ft.text("description", ""),
                                          where=f"dataset '{name}'", bounds=_bounds(ft, name)))
        except InvalidInput as exc:
            raise ConfigError(str(table.file), str(exc)) from None
        ft.done()
    table.done()
    try:
        decl = DatasetDecl(department, name, tuple(fields), description)
        decl.check_levels(levels)
    except InvalidInput as exc:
        raise ConfigError(str(table.file), str(exc)) from None
    return DatasetConfig(decl, source)


def _subject_reports(table: Table) -> SubjectReportSettings:
    """[subject_reports]: whether uses are recorded, and the covert-case rules reports apply."""
    if not table.has("subject_reports"):
        return SubjectReportSettings()
    section = table.table("subject_reports")
    rules = []
    for rule in section.tables("rules", []):
        name, case = rule.text("name"), rule.text("case")
        delay = rule.integer("delay_days", None)
        if delay is not None and delay < 1:
            raise rule.error("delay_days", "must be at least 1 (omit it to withhold the cases' entries for good)")
        try:
            rules.append(CovertRule(name, case, rule.text("agency", ""), delay))
        except re.error as exc:
            raise rule.error("case", f"not a regular expression: {exc}") from None
        rule.done()
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise section.error("rules", "each rule needs a name of its own (reports record the rules they applied)")
    settings = SubjectReportSettings(section.boolean("record", True), section.boolean("tell_withheld", False),
                                     tuple(rules))
    section.done()
    return settings
