"""Scanner speed on a large codebase nobody here wrote: the installed Django package.

In one run, on the same files:
  floor     read + ast.parse every file, one process, nothing else;
  scanner   the full scan (discovery, rules, hierarchy, suppressions) with --jobs 1
            and with --jobs <cores>.
Prints files/s and each scan's time relative to the floor (best of --repeat runs).

    .venv/bin/python bench/scanner_speed.py [--repeat 5] [PATH]
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_SERIAL = 1.5


def best_of(repeat: int, work: Callable[[], object]) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def main() -> None:
    import django

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(Path(django.__file__).parent))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from governance_scanner.config import ScannerConfig
    from governance_scanner.scanner import Scanner, _Discovery

    target = Path(args.path).resolve()
    config = ScannerConfig(root=target.parent)
    files = _Discovery(config).files([target])

    def floor() -> None:
        for path in files:
            with contextlib.suppress(SyntaxError, ValueError):
                ast.parse(path.read_bytes())

    cores = os.cpu_count() or 1
    results = {}

    def scan(jobs: int) -> Callable[[], object]:
        return lambda: Scanner(config, cwd=target.parent, jobs=jobs).scan([target])

    results["floor: read + ast.parse"] = best_of(args.repeat, floor)
    results["scan_violations --jobs 1"] = best_of(args.repeat, scan(1))
    results[f"scan_violations --jobs {cores}"] = best_of(args.repeat, scan(cores))
    findings = Scanner(config, cwd=target.parent, jobs=1).scan([target])

    print(f"scanner_speed: {len(files)} files under {target} (Django {django.__version__})")
    print(f"best of {args.repeat} runs; {len(findings.violations)} findings in that code")
    print(f"{'':30} {'seconds':>8} {'files/s':>9} {'x floor':>8}")
    floor_time = results["floor: read + ast.parse"]
    for label, seconds in results.items():
        print(f"{label:30} {seconds:8.3f} {len(files) / seconds:9.0f} {seconds / floor_time:8.2f}")
    serial = results["scan_violations --jobs 1"] / floor_time
    parallel = results[f"scan_violations --jobs {cores}"] / floor_time
    print(
        f"--jobs 1: {serial:.2f}x the floor (target <= {TARGET_SERIAL}); "
        f"--jobs {cores}: {parallel:.2f}x (target < 1.0)"
    )


if __name__ == "__main__":
    main()
