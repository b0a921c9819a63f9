"""The package layers: every import, function-level ones included, points down (or sideways where allowed).

Bottom to top: errors, crypto, core, query, protos, server, gateway and adapters, client, demo,
cli and console.
A module may import its own layer and the layers below it, never one above, and the
pairs in APART never import each other. The lower layers also stay free of the transport:
crypto, core and query import no gRPC and no OpenTelemetry.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Source folders and the packages they are installed as (pyproject.toml's package-dir).
FOLDERS = {"fedgate": "fedgate", "gateway": "fedgate.gateway", "adapters": "fedgate.adapters",
           "crypto": "fedgate.crypto", "policies": "fedgate.policies"}

# Module prefix -> layer; the longest prefix that matches a module decides.
LAYERS = {
    "fedgate.core.errors": 0,   # raised everywhere, crypto included
    "fedgate.crypto": 1,
    "fedgate.core": 2,
    "fedgate.policies": 2,      # policy data
    "fedgate.query": 3,
    "fedgate.protos": 4,        # generated messages: never in crypto, core or query
    "fedgate.server": 5,
    "fedgate.gateway": 6,
    "fedgate.adapters": 6,
    "fedgate.client": 7,
    "fedgate.demo": 8,
    "fedgate.cli": 9,
    "fedgate.console": 9,       # the web console: the CLI's peer, over the same library calls
    "fedgate": 10,              # fedgate/__init__.py and __main__.py
}
# (importer prefix, imported prefix): never, whatever the layers say.
APART = {
    ("fedgate.gateway", "fedgate.adapters"): "the gateway and the adapters meet only over gRPC",
    ("fedgate.adapters", "fedgate.gateway"): "the gateway and the adapters meet only over gRPC",
    ("fedgate.client", "fedgate.gateway"): "the client library talks to the gateway only over gRPC",
    ("fedgate.client", "fedgate.adapters"): "the client library never reaches a department",
}
# Libraries the layers below the protos must not import (prefix of the library's module name).
TRANSPORT = ("grpc", "opentelemetry")
TRANSPORT_FREE = ("fedgate.crypto", "fedgate.core", "fedgate.query")


@dataclass(frozen=True)
class Import:
    module: str     # the importing module
    target: str     # the imported module (or the module a name was imported from)
    line: int

    def where(self) -> str:
        return f"{self.module} (line {self.line}) imports {self.target}"


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> list[Import]:
    """Every import in the module, at any depth (functions, TYPE_CHECKING blocks), resolved to a module."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                # `from fedgate.core import errors` imports the module fedgate.core.errors.
                sub = f"{base}.{alias.name}"
                out.append(Import(module, sub if sub in MODULES else base, node.lineno))
    return out


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports(module, path)]


def _prefix(module: str, table: dict[str, int] | tuple[str, ...]) -> str | None:
    matches = [p for p in table if module == p or module.startswith(p + ".")]
    return max(matches, key=len) if matches else None


def _layer(module: str) -> int:
    prefix = _prefix(module, LAYERS)
    assert prefix is not None, module
    return LAYERS[prefix]


needs_layout = pytest.mark.skipif(
    not (REPO / "fedgate" / "core").is_dir(),
    reason="the layered package layout (fedgate/core, server, client, cli) is made by the relayout script")


@needs_layout
def test_the_tree_is_read() -> None:
    # Guards the test itself: an empty walk would pass everything below.
    assert "fedgate.core.errors" in MODULES and "fedgate.gateway.server" in MODULES
    assert any(i.target == "fedgate.core.errors" for i in IMPORTS)


@needs_layout
def test_no_module_is_left_at_the_root() -> None:
    # Everything lives in a layer; only the package marker and `python -m fedgate` stay at the top.
    loose = sorted(p.name for p in (REPO / "fedgate").glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert not loose, f"modules at the root of fedgate/, give each a layer: {loose}"


@needs_layout
def test_imports_point_down() -> None:
    upward = [f"{i.where()}: layer {_layer(i.target)} is above layer {_layer(i.module)}"
              for i in IMPORTS if i.target.startswith("fedgate") and _layer(i.target) > _layer(i.module)]
    assert not upward, "imports into a higher layer:\n" + "\n".join(upward)


@needs_layout
def test_apart_packages_never_import_each_other() -> None:
    crossing = [f"{i.where()}: {why}" for i in IMPORTS for (src, dst), why in APART.items()
                if _prefix(i.module, (src,)) and _prefix(i.target, (dst,))]
    assert not crossing, "imports between packages kept apart:\n" + "\n".join(crossing)


@needs_layout
def test_lower_layers_import_no_transport() -> None:
    found = [i.where() for i in IMPORTS if _prefix(i.module, TRANSPORT_FREE) and _prefix(i.target, TRANSPORT)]
    assert not found, "gRPC or OpenTelemetry below the server layer:\n" + "\n".join(found)


@pytest.mark.parametrize(("importer", "target", "allowed"), [
    ("fedgate.crypto.psi", "fedgate.core.errors", True),
    ("fedgate.crypto.psi", "fedgate.core.datasets", False),
    ("fedgate.core.datasets", "fedgate.crypto.ids", True),
    ("fedgate.core.audit_entry", "fedgate.gateway.audit_store", False),
    ("fedgate.server.tls", "fedgate.client.gateway", False),
    ("fedgate.gateway.server", "fedgate.server.serving", True),
    ("fedgate.cli.commands", "fedgate.gateway.server", True),
    ("fedgate.demo.runner", "fedgate.cli.commands", False),
])
def test_the_rules_themselves(importer: str, target: str, allowed: bool) -> None:
    # Known answers for the table, so that a rule loosened by mistake shows.
    assert (_layer(target) <= _layer(importer)) is allowed
