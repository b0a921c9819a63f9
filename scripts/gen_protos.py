"""Regenerate the Python stubs of protos/fedgate/v1 (the one way to do it).

    python scripts/gen_protos.py            # rewrite the committed stubs
    python scripts/gen_protos.py --out DIR  # write them elsewhere (the staleness test)

protoc names generated modules after the .proto path under the include root,
so `import "fedgate/v1/common.proto"` becomes `from fedgate.v1 import
common_pb2`. Installed, the stubs live in `fedgate.protos.fedgate.v1`, so this
script turns those absolute imports into relative ones; nothing else in the
generated text is touched.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "protos"
PACKAGE_DIR = Path("fedgate") / "v1"
_ABSOLUTE_IMPORT = re.compile(r"^from fedgate\.v1 import (\w+)", re.MULTILINE)
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_dir: Path) -> list[Path]:
    """Compile every .proto of fedgate.v1 into out_dir; return the files written."""
    protos = sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT / PACKAGE_DIR}")
    well_known = str(resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(str(p.relative_to(PROTO_ROOT)) for p in protos),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for src in sorted((Path(tmp) / PACKAGE_DIR).iterdir()):
            text = _ABSOLUTE_IMPORT.sub(r"from . import \1", src.read_text())
            dst = out_dir / src.name
            dst.write_text(text)
            written.append(dst)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROTO_ROOT / PACKAGE_DIR)
    out = parser.parse_args().out
    if out == PROTO_ROOT / PACKAGE_DIR:
        for old in out.iterdir():
            if old.name.endswith(GENERATED_SUFFIXES):
                old.unlink()
    for path in generate(out):
        print(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


if __name__ == "__main__":
    sys.exit(main())
