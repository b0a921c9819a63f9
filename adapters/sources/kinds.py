"""The kinds of data source an adapter can read, by the `kind` of a dataset's `source` table.

To add a kind: a module with its Source class and a `SourceKind` (how to read
its TOML table, how to open it), and one entry in KINDS below.
"""

from __future__ import annotations

from collections.abc import Mapping

from fedgate.adapters.sources import Source, SourceKind, SourceSpec, csv_file, spark, sql
from fedgate.core.datasets import FieldType
from fedgate.core.tomlconfig import Table

# In the order configuration errors list them.
KINDS: dict[str, SourceKind] = {kind.name: kind for kind in (csv_file.KIND, sql.SQLITE, sql.SQL, spark.KIND)}


def read_spec(table: Table) -> SourceSpec:
    """The `source` table of a dataset, or a ConfigError naming the known kinds."""
    name = table.text("kind")
    kind = KINDS.get(name)
    if kind is None:
        raise table.error("kind", f"unknown source kind {name!r} (allowed: {', '.join(KINDS)})")
    spec = kind.read(table)
    table.done()
    return spec


def open_source(spec: SourceSpec, types: Mapping[str, FieldType]) -> Source:
    """Open the source a spec names, with its dataset's declared field types."""
    return KINDS[spec.kind].open(spec, types)
