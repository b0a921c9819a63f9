"""The distribution: committed stubs are current; the wheel holds only `fedgate`."""

from __future__ import annotations

import filecmp
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STUBS = REPO / "protos" / "fedgate" / "v1"


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools (dev extra) not installed")
def test_committed_stubs_are_not_stale(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(REPO / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    fresh = sorted(p.name for p in tmp_path.iterdir())
    committed = sorted(p.name for p in STUBS.iterdir() if p.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")))
    assert fresh == committed, "stub files differ: run `make protos`"
    _, mismatch, errors = filecmp.cmpfiles(tmp_path, STUBS, fresh, shallow=False)
    assert not mismatch and not errors, f"stale stubs {mismatch + errors}: run `make protos`"


def test_wheel_contains_only_the_fedgate_package(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("fedgate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"fedgate"}
    # Every package folder of the source tree must be in the wheel (the package
    # list in pyproject.toml is explicit, so a new subpackage is easy to miss).
    mapping = {"fedgate": "fedgate", "gateway": "fedgate/gateway", "adapters": "fedgate/adapters",
               "crypto": "fedgate/crypto", "protos": "fedgate/protos", "policies": "fedgate/policies"}
    for folder, target in mapping.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.relative_to(REPO / folder).as_posix()
            assert f"{target}/{rel}" in names, f"{folder}/{rel} is missing from the wheel: add it to pyproject.toml"
    for expected in ("fedgate/gateway/server.py", "fedgate/adapters/server.py", "fedgate/crypto/ids.py",
                     "fedgate/protos/fedgate/v1/registry_pb2.py", "fedgate/protos/fedgate/v1/registry.proto",
                     "fedgate/policies/levels.toml", "fedgate/cli/commands.py"):
        assert expected in names
