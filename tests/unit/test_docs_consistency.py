"""The user docs and the example configurations say what the code does."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest

from fedgate.adapters.config import AdapterConfig
from fedgate.core.classification import policies_dir
from fedgate.gateway.config import GatewayConfig

REPO = Path(__file__).resolve().parents[2]
# Top-level lines such as `# ticket_ttl_s = 60   # ...`: a documented optional key.
_COMMENTED_KEY = re.compile(r"^# (\w+ = .*)$")


def _uncommented(example: Path) -> str:
    """The example with every commented-out top-level key turned on."""
    lines = []
    top_level = True
    for line in example.read_text(encoding="utf-8").splitlines():
        top_level = top_level and not line.startswith("[")
        match = _COMMENTED_KEY.match(line) if top_level else None
        lines.append(match.group(1) if match else line)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("name", "cls", "not_keys"), [
    ("gateway.example.toml", GatewayConfig, set()),
    ("adapter.example.toml", AdapterConfig, {"levels"}),  # levels come from policy_dir
])
def test_example_documents_every_key(tmp_path: Path, name: str, cls: type, not_keys: set[str]) -> None:
    """Every key the configuration reads is in its example, and every commented key is a real one."""
    text = _uncommented(REPO / "deploy" / name)
    keys = {f.name for f in dataclasses.fields(cls)} - not_keys
    missing = sorted(k for k in keys if not re.search(rf"^\[*{k}\b", text, re.MULTILINE))
    assert not missing, f"deploy/{name} does not document {missing}"
    shutil.copytree(policies_dir(), tmp_path / "policies")
    (tmp_path / name).write_text(text, encoding="utf-8")
    cls.load(tmp_path / name)  # an unknown (stale) key would raise ConfigError


def test_readme_links_only_what_the_repository_has() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "DESIGN.md" not in readme, "README points at a document users of the repository do not have"
    assert "docs/architecture.md" in readme
    for path in set(re.findall(r"`((?:docs|deploy)/[\w./-]+\.(?:md|toml))`", readme)):
        assert (REPO / path).is_file(), path


def _minutes(text: str) -> set[str]:
    return set(re.findall(r"about ([\d.]+) minutes", text))


def test_bench_duration_is_stated_once() -> None:
    """Makefile, README and docs/performance.md give the same `make bench` durations."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    bench_comment = makefile[:makefile.index("\nbench:")].rsplit("\n\n", 1)[-1]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    readme_bench = readme[readme.index("make bench "):readme.index("- **What runs.**")]
    performance = (REPO / "docs" / "performance.md").read_text(encoding="utf-8")
    assert _minutes(bench_comment) == _minutes(readme_bench), (bench_comment, readme_bench)
    assert _minutes(bench_comment) <= _minutes(performance)
