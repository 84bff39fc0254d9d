"""Generate ``mofi/v1/*_pb2*.py`` from ``protos/`` (``make protos`` and ``mofi protos``).

Why generated at build time rather than committed: the stubs must come from the pinned grpcio-tools
(1.81.1, protobuf 6 runtime) and can then never be stale against the .proto files.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

__all__ = ["generate", "PROTO_ROOT"]

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "protos"


def generate(proto_root: Path = PROTO_ROOT, out: Path = REPO, pyi: bool = True) -> list[Path]:
    """Compile every .proto under ``proto_root`` into ``out``; returns the generated files."""
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(proto_root)) for p in proto_root.rglob("*.proto"))
    include = str(resources.files("grpc_tools") / "_proto")
    args = ["protoc", f"-I{proto_root}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}"]
    if pyi:
        args.append(f"--pyi_out={out}")
    rc = protoc.main(args + protos)
    if rc != 0:
        raise RuntimeError(f"protoc failed ({rc}) on {protos}")
    return sorted(p for p in (out / "mofi" / "v1").glob("*_pb2*.py*"))


if __name__ == "__main__":
    for path in generate():
        print(path.relative_to(REPO) if path.is_relative_to(REPO) else path)
    sys.exit(0)
