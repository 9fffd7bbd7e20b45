"""The committed generated code must be exactly what `make proto` produces."""

from __future__ import annotations

from pathlib import Path

from mesh._internal.protogen import PROTO_PACKAGES, ROOT, generate


def test_generated_code_is_current(tmp_path: Path) -> None:
    fresh = generate(tmp_path)
    assert fresh, "no .proto files were compiled"
    stale = []
    for path in fresh:
        rel = path.relative_to(tmp_path)
        committed = ROOT / rel
        if not committed.exists() or committed.read_bytes() != path.read_bytes():
            stale.append(str(rel))
    for pkg in PROTO_PACKAGES:
        names = {p.name for p in fresh}
        extra = [p for p in (ROOT / pkg).glob("*_pb2*.py*") if p.name not in names]
        stale.extend(str(p.relative_to(ROOT)) for p in extra)
    assert stale == [], f"generated code is stale, run `make proto`: {stale}"
