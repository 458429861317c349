"""Generate the Python gRPC stubs for proto/ into shared/api (what `make proto` runs).

protoc names the modules after the proto's path (`pricing/v1/pricing_pb2.py`) and makes
the gRPC module import its messages absolutely (`from pricing.v1 import pricing_pb2`). We
keep the descriptor's path as it is, since reflection clients see it, and flatten the
modules into the `shared.api` package with a relative import instead.

    python proto/generate.py [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = PROTO_ROOT.parent / "shared" / "api"
PROTO_FILES = ["pricing/v1/pricing.proto"]


def generate(out_dir: Path) -> list[Path]:
    """Write the stubs of every file in PROTO_FILES into out_dir; return the paths written."""
    well_known_types = resources.files("grpc_tools") / "_proto"
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        argv = [
            "protoc",
            f"--proto_path={PROTO_ROOT}",
            f"--proto_path={well_known_types}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *PROTO_FILES,
        ]
        if protoc.main(argv) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(argv)}")
        for proto in PROTO_FILES:
            package = Path(proto).parent
            absolute_import = f"from {'.'.join(package.parts)} import "
            for generated in sorted((Path(tmp) / package).iterdir()):
                text = generated.read_text().replace(absolute_import, "from . import ")
                target = out_dir / generated.name
                target.write_text(text)
                written.append(target)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
