"""The datasets an adapter serves, each with its source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fedgate.adapters.sources import Source
from fedgate.adapters.sources.guard import GuardedSource
from fedgate.core.datasets import DatasetDecl
from fedgate.core.errors import NotFound


class Catalogue:
    def __init__(self, datasets: Sequence[DatasetDecl], sources: Mapping[str, Source]) -> None:
        self.datasets = list(datasets)
        # Every request reads through the guard: a source failing mid-life leaves as a reference only.
        self._by_name: dict[str, tuple[DatasetDecl, Source]] = {
            d.name: (d, GuardedSource(d.qualified_name, sources[d.name])) for d in datasets}

    def lookup(self, name: str) -> tuple[DatasetDecl, Source]:
        """The declaration and source of `name`; NotFound if this adapter does not serve it."""
        found = self._by_name.get(name)
        if found is None:
            raise NotFound(f"this adapter serves no dataset '{name}'")
        return found
