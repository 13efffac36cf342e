"""Compile protos/ into importable Python modules (package `agora.*`) under gen/.

Run by the Makefile; kept in Python so that it needs nothing but grpcio-tools.
"""

import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc


def generate(proto_root: Path, out_root: Path) -> None:
    protos = sorted(str(p) for p in proto_root.rglob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {proto_root}")
    out_root.mkdir(parents=True, exist_ok=True)
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "protoc",
        f"-I{proto_root}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # generated modules import each other as `agora.x.v1...`: every folder must be a package
    for folder in [out_root / "agora", *(out_root / "agora").rglob("*")]:
        if folder.is_dir():
            (folder / "__init__.py").touch()


if __name__ == "__main__":
    generate(Path(sys.argv[1]), Path(sys.argv[2]))
