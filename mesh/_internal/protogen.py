"""Generate the Python code for ``proto/`` into the package tree (``make proto``).

The generated modules are committed; ``tests/test_proto_current.py`` runs the
same generation into a scratch directory and fails when the committed code
differs, so nobody ships a stale API.
"""

from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "proto"
# Packages (relative to PROTO_ROOT) whose .proto files we compile.
PROTO_PACKAGES = ("mesh/v1",)


def proto_files() -> list[Path]:
    return sorted(p for pkg in PROTO_PACKAGES for p in (PROTO_ROOT / pkg).glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Compile every .proto under PROTO_PACKAGES into ``out_dir``; return the files written."""
    from grpc_tools import protoc

    well_known = str(files("grpc_tools") / "_proto")
    sources = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    written = []
    for pkg in PROTO_PACKAGES:
        pkg_dir = out_dir / pkg
        init = pkg_dir / "__init__.py"
        if not init.exists():
            init.write_text(
                '"""Generated from proto/' + pkg + ' by `make proto`; do not edit."""\n'
            )
        written.extend(sorted(pkg_dir.glob("*_pb2*.py*")))
    return written


def main() -> None:
    written = generate(ROOT)
    for path in written:
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
    sys.exit(0)
