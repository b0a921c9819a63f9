"""A gateway and two department adapters as separate processes, for tests of the CLI and of processes."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import support
from fedgate.server import pki
from fedgate.demo import deployment, processes
from fedgate.demo.deployment import DepartmentSpec, GatewaySpec, policy_copy
from fedgate.core.identity import Identity
from fedgate.server.tls import TlsFiles


@dataclass(frozen=True)
class Deployment:
    tmp: Path
    certs: Path
    gateway: processes.ServerProcess
    adapters: dict[str, processes.ServerProcess]

    def env(self, who: Identity = support.SUPERVISOR) -> dict[str, str]:
        files = TlsFiles.in_dir(self.certs, who)
        return {**os.environ, "FEDGATE_GATEWAY": f"127.0.0.1:{self.gateway.port}", "FEDGATE_CA": str(files.ca),
                "FEDGATE_CERT": str(files.cert), "FEDGATE_KEY": str(files.key), "COLUMNS": "200",
                "FEDGATE_STATE_DIR": str(self.tmp / f"state-{who.file_stem}")}

    def fedgate(self, *args: str, who: Identity = support.SUPERVISOR,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fedgate", *args], capture_output=True, text=True,
                              env=self.env(who), timeout=180, cwd=cwd or self.tmp)


@contextlib.contextmanager
def deployed(tmp_path: Path, safeguards: str = "min_set_size = 10\n", workers: int = 0,
             noisy: bool = False, tables: dict[str, str] | None = None, spark: bool = False) -> Iterator[Deployment]:
    """hrss.subsidies (20 rows, CSV) and samr.companies (15 rows, SQLite) behind a gateway, all processes;
    `workers` worker processes per adapter; `noisy`: the shipped DP policy (else every aggregate is exact);
    `tables`: each department's own TOML tables ([approvals], [[rules]]), paths relative to `tmp_path`;
    `spark`: the same rows as Parquet files, read by Spark sources in local mode."""
    certs = tmp_path / "certs"
    pki.init_dir(certs, [Identity.department("hrss"), Identity.department("samr"), support.SUPERVISOR,
                         support.OFFICER])
    csv = tmp_path / "s.csv"
    csv.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
    db = tmp_path / "samr.db"
    support.write_companies(f"sqlite:///{db}", n=15)
    gateway = GatewaySpec.in_dir(tmp_path / "gw", certs, workers=0,
                                 policy_dir=support.with_test_rules(policy_copy(tmp_path / "policies", safeguards),
                                                                   noisy))
    decls = {"hrss": support.SUBSIDIES_DECL.spec(path=csv),
             "samr": support.COMPANIES_DECL.spec(kind="sqlite", where=f'path = "{db}"')}
    if spark:
        subsidies, companies = tmp_path / "subsidies.parquet", tmp_path / "companies.parquet"
        support.write_parquet({
            subsidies: ("uscc string, company_name string, amount_fen bigint",
                        support.csv_rows(support.SUBSIDIES_CSV, {"amount_fen": int})),
            companies: ("uscc string, status string", [(support.uscc(i), "存续") for i in range(15)])})
        # Each adapter's Spark event log (its jobs, their groups) in spark-events/, its app named for its department.
        (events := tmp_path / "spark-events").mkdir()
        conf = {**support.SPARK_TEST_CONF, "spark.eventLog.enabled": "true", "spark.eventLog.dir": str(events)}
        local = {"kind": "spark", "format": "parquet", "master": "local[1]", "conf": conf}
        decls = {dept: dataclasses.replace(decl, source={**local, "path": str(path), "app_name": f"fedgate-{dept}"})
                 for (dept, decl), path in zip(decls.items(), (subsidies, companies))}
    departments = [DepartmentSpec.in_dir(dept, [decl], certs, data_dir=tmp_path / dept, workers=workers,
                                         register_timeout_s=10, tables=(tables or {}).get(dept, ""))
                   for dept, decl in decls.items()]
    with deployment.deployed(tmp_path, gateway, departments) as servers:
        yield Deployment(tmp_path, certs, servers.procs["gateway"], {d: servers.procs[d] for d in ("hrss", "samr")})
