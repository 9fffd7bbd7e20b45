"""Run every benchmark in bench/, merge their figures into bench/results.json, print it.

Each ``bench/<name>.py`` (except this file and ``_``-prefixed helpers) runs on its
own, one after another so they do not compete for the cores, with the project's
virtualenv Python and a timeout. Each prints one flat JSON object; the objects
are merged, and a key printed by more than one script is kept once per script as
``<name>.<key>``. A script that fails, times out or prints something else is
reported on stderr and as ``<name>.error`` in the results, and the run exits 1.

    python bench/run_all.py [--timeout SECONDS] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results.json"
DEFAULT_TIMEOUT = 600.0

Scalar = str | int | float | bool | None


def python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def scripts(only: list[str]) -> list[Path]:
    found = sorted(
        path
        for path in BENCH.glob("*.py")
        if path.name != Path(__file__).name and not path.name.startswith("_")
    )
    if only:
        missing = set(only) - {path.stem for path in found}
        if missing:
            raise SystemExit(f"no such benchmark: {', '.join(sorted(missing))}")
        found = [path for path in found if path.stem in only]
    return found


def parse_output(stdout: str) -> dict[str, Scalar]:
    """The one flat JSON object a benchmark prints (the last such line, if it logs first)."""
    candidates = [stdout.strip()] + [line.strip() for line in reversed(stdout.splitlines())]
    for text in candidates:
        if not text.startswith("{"):
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            continue
        if not isinstance(value, dict):
            continue
        nested = [k for k, v in value.items() if isinstance(v, dict | list)]
        if nested:
            raise ValueError(f"not a flat object: {', '.join(nested)} nested")
        return value
    raise ValueError("printed no JSON object")


def run(script: Path, timeout: float) -> tuple[dict[str, Scalar] | None, str | None, float]:
    """(figures, error, seconds) for one benchmark."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [python(), str(script)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:g} s", time.perf_counter() - start
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output on stderr"]
        return None, f"exit status {done.returncode}: {tail[0][:300]}", elapsed
    try:
        return parse_output(done.stdout), None, elapsed
    except ValueError as exc:
        return None, str(exc), elapsed


def merge(outputs: dict[str, dict[str, Scalar]]) -> dict[str, Scalar]:
    counts = Counter(key for figures in outputs.values() for key in figures)
    merged: dict[str, Scalar] = {}
    for name, figures in outputs.items():
        for key, value in figures.items():
            merged[f"{name}.{key}" if counts[key] > 1 else key] = value
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per script")
    parser.add_argument("--only", nargs="*", default=[], metavar="NAME", help="run only these")
    args = parser.parse_args(argv)

    outputs: dict[str, dict[str, Scalar]] = {}
    errors: dict[str, str] = {}
    for script in scripts(args.only):
        print(f"bench: {script.stem} ...", file=sys.stderr, flush=True)
        figures, error, elapsed = run(script, args.timeout)
        if error is not None:
            errors[script.stem] = error
            print(f"bench: {script.stem} FAILED: {error}", file=sys.stderr, flush=True)
        else:
            assert figures is not None
            outputs[script.stem] = figures
            print(f"bench: {script.stem} done in {elapsed:.1f} s", file=sys.stderr, flush=True)

    results = merge(outputs)
    for name, error in errors.items():
        results[f"{name}.error"] = error
    text = json.dumps(results, indent=2) + "\n"
    RESULTS.write_text(text)
    print(text, end="")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
