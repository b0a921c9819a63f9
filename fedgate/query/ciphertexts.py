"""A value holder's ciphertexts as the gateway keeps them: packed bytes in token order, never read, only taken."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fedgate.core.errors import RemoteProtocolError


@dataclass
class CipherColumns:
    """One side's ciphertexts as they arrived: ``columns`` per row, rows in token order."""

    department: str
    columns: int
    width: int
    chunks: list[bytes] = field(default_factory=list)
    # First row of each chunk, and the total: chunks are kept as they came (no copy of the side).
    starts: list[int] = field(default_factory=lambda: [0])

    @property
    def rows(self) -> int:
        return self.starts[-1]

    def add(self, data: bytes, rows: int) -> None:
        """Append one chunk, checking only its size (values are checked when used)."""
        if rows < 0 or len(data) != rows * self.columns * self.width:
            raise RemoteProtocolError(f"department '{self.department}' sent {len(data)} bytes of ciphertexts "
                                      f"for {rows} rows of {self.columns} values")
        if rows:
            self.chunks.append(data)
            self.starts.append(self.rows + rows)

    def check_complete(self, tokens: int) -> None:
        if self.rows != tokens:
            raise RemoteProtocolError(f"department '{self.department}' sent values for {self.rows} rows "
                                      f"but {tokens} tokens")

    def take(self, positions: npt.NDArray[np.int64], column: int) -> list[bytes]:
        """The ciphertexts of ``column`` at the given row positions, in that order."""
        if len(positions) and not (0 <= int(positions.min()) and int(positions.max()) < self.rows):
            raise RemoteProtocolError(f"a position lies outside department '{self.department}''s rows")
        chunk_of = np.searchsorted(np.asarray(self.starts, dtype=np.int64), positions, side="right") - 1
        stride, w, offset = self.columns * self.width, self.width, column * self.width
        out = []
        for p, c in zip(positions.tolist(), chunk_of.tolist()):
            start = (p - self.starts[c]) * stride + offset
            out.append(self.chunks[c][start:start + w])
        return out
