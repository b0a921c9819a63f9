"""A gateway and two department adapters as separate processes, for tests of the CLI and of processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import support
from fedgate import pki
from fedgate.classification import policies_dir
from fedgate.demo import processes
from fedgate.identity import Identity
from fedgate.tls import TlsFiles


@dataclass(frozen=True)
class Deployment:
    tmp: Path
    certs: Path
    gateway: processes.ServerProcess
    adapters: dict[str, processes.ServerProcess]

    def env(self, who: Identity = support.SUPERVISOR) -> dict[str, str]:
        files = TlsFiles.in_dir(self.certs, who)
        return {**os.environ, "FEDGATE_GATEWAY": f"127.0.0.1:{self.gateway.port}", "FEDGATE_CA": str(files.ca),
                "FEDGATE_CERT": str(files.cert), "FEDGATE_KEY": str(files.key), "COLUMNS": "200"}

    def fedgate(self, *args: str, who: Identity = support.SUPERVISOR,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fedgate", *args], capture_output=True, text=True,
                              env=self.env(who), timeout=180, cwd=cwd or self.tmp)


@contextlib.contextmanager
def deployed(tmp_path: Path, safeguards: str = "min_set_size = 10\n", workers: int = 0) -> Iterator[Deployment]:
    """hrss.subsidies (20 rows, CSV) and samr.companies (15 rows, SQLite) behind a gateway, all processes;
    `workers` worker processes per adapter."""
    certs = tmp_path / "certs"
    pki.init_dir(certs, [Identity.department("hrss"), Identity.department("samr"), support.SUPERVISOR,
                         support.OFFICER])
    pol = tmp_path / "policies"
    shutil.copytree(policies_dir(), pol, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (pol / "safeguards.toml").write_text(safeguards)
    (tmp_path / "gateway.toml").write_text(support.gateway_toml(tmp_path / "gw", certs).replace(
        "[tls]", f'policy_dir = "{pol}"\n\n[tls]'))
    started: list[processes.ServerProcess] = []
    try:
        gw = processes.start("gateway", ["gateway", "serve", "--config", str(tmp_path / "gateway.toml")], tmp_path)
        started.append(gw)
        processes.wait_ready(gw)
        csv = tmp_path / "s.csv"
        csv.write_text(support.SUBSIDIES_CSV, encoding="utf-8")
        db = tmp_path / "samr.db"
        support.write_companies(f"sqlite:///{db}", n=15)
        adapters = {}
        for dept, decl in (("hrss", support.SUBSIDIES_DECL.format(path=csv)),
                           ("samr", support.COMPANIES_DECL.format(kind="sqlite", where=f'path = "{db}"'))):
            cfg = tmp_path / f"{dept}.toml"
            cfg.write_text(support.adapter_toml(dept, f"127.0.0.1:{gw.port}", certs, decl,
                                                vkey=tmp_path / "gw" / "log-signing.vkey")
                           .replace("workers = 0", f"workers = {workers}")
                           .replace("[tls]", f'data_dir = "{tmp_path / dept}"\n\n[tls]'))
            adapters[dept] = processes.start(dept, ["adapter", "serve", "--config", str(cfg)], tmp_path)
            started.append(adapters[dept])
        for proc in started[1:]:
            processes.wait_ready(proc)
        yield Deployment(tmp_path, certs, gw, adapters)
    finally:
        for proc in reversed(started):
            processes.stop(proc)
