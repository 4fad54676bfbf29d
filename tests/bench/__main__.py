"""Run every ``tests/bench/bench_*.py`` module's ``run()`` in turn.

Each benchmark prints its own result lines
(``<name>: ours <x> / baseline <y> = <ratio> (budget <b>) <OK|OVER BUDGET>``). A benchmark
over budget is reported, not failed: the exit status is 0 unless a benchmark raised.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path


def discover() -> list[str]:
    """Module names of every benchmark in this package, in name order."""
    here = Path(__file__).resolve().parent
    return [f"{__package__}.{path.stem}" for path in sorted(here.glob("bench_*.py"))]


def main() -> int:
    failed: list[str] = []
    for name in discover():
        started = time.perf_counter()
        try:
            module = importlib.import_module(name)
            module.run()
        except Exception:
            traceback.print_exc()
            print(f"{name}: ERROR", flush=True)
            failed.append(name)
        else:
            print(f"  ({name} took {time.perf_counter() - started:.1f} s)", flush=True)
    if failed:
        print(f"{len(failed)} benchmark(s) raised: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
