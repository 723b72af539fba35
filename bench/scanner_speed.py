"""Scanner speed on a large codebase nobody here wrote: the installed Django package.

Everything is timed as a whole process, the way a developer or pre-commit runs it,
in one run and on the same files:
  floor       a Python process that reads and ast.parses every file, nothing else
              (and the same with the cyclic garbage collector off, as the scanner runs);
  scanner     python -m governance_scanner --jobs 1, and --jobs <cores>;
  manage.py   manage.py scan_violations --jobs 1 (the same scan after booting Django);
  one file    python -m governance_scanner on one small file, and a bare interpreter.
Prints seconds, files/s and each time relative to the floor (best of --repeat runs,
the commands taking turns).

    .venv/bin/python bench/scanner_speed.py [--repeat 5] [PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_SERIAL = 1.3  # x the floor, --jobs 1
TARGET_ONE_FILE = 0.15  # seconds
FLOOR = """
import ast, gc, sys
if sys.argv[2] == "off":
    gc.disable()
for path in open(sys.argv[1]).read().splitlines():
    try:
        ast.parse(open(path, "rb").read())
    except (SyntaxError, ValueError):
        pass
"""


def best_of(repeat: int, commands: dict[str, list[str]], cwd: Path) -> dict[str, float]:
    """The fastest of ``repeat`` runs of each command as a process, in seconds.

    The commands take turns, round after round, so that a busy moment of the
    machine slows all of them rather than one.
    """
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    best = dict.fromkeys(commands, float("inf"))
    for _ in range(repeat):
        for label, command in commands.items():
            started = time.perf_counter()
            completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, check=False)
            best[label] = min(best[label], time.perf_counter() - started)
            if completed.returncode not in (0, 1):
                raise SystemExit(f"{command} failed: {completed.stderr.decode()}")
    return best


def main() -> None:
    import django

    from governance_scanner.config import ScannerConfig
    from governance_scanner.scanner import _Discovery

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(Path(django.__file__).parent))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    target = Path(args.path).resolve()
    files = _Discovery(ScannerConfig(root=target.parent)).files([target])
    cores = os.cpu_count() or 1
    python = sys.executable
    scanner = [python, "-m", "governance_scanner", "--no-config"]
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)  # no pyproject.toml here or above: nothing configured
        listing = work / "files.txt"
        listing.write_text("\n".join(files))
        small = work / "small.py"
        small.write_text("def handler(plugin, payload):\n    return plugin.name, payload\n")
        timed = {
            "floor: read + ast.parse": [python, "-c", FLOOR, str(listing), "on"],
            "floor, cyclic gc off": [python, "-c", FLOOR, str(listing), "off"],
            "-m governance_scanner --jobs 1": [*scanner, "--jobs", "1", str(target)],
            f"-m governance_scanner --jobs {cores}": [*scanner, "--jobs", str(cores), str(target)],
            "manage.py scan_violations --jobs 1": [
                python,
                str(ROOT / "manage.py"),
                "scan_violations",
                "--no-config",
                "--jobs",
                "1",
                str(target),
            ],
        }
        timed["bare interpreter"] = [python, "-c", "pass"]
        timed["one small file"] = [*scanner, "--jobs", "1", str(small)]
        results = best_of(args.repeat, timed, work)
        bare = results.pop("bare interpreter")
        one_file = results.pop("one small file")

    print(f"scanner_speed: {len(files)} files under {target} (Django {django.__version__})")
    print(f"whole processes, best of {args.repeat} rounds")
    print(f"{'':38} {'seconds':>8} {'files/s':>9} {'x floor':>8}")
    floor = results["floor: read + ast.parse"]
    for label, seconds in results.items():
        print(f"{label:38} {seconds:8.3f} {len(files) / seconds:9.0f} {seconds / floor:8.2f}")
    serial = results["-m governance_scanner --jobs 1"] / floor
    serial_gc_off = results["-m governance_scanner --jobs 1"] / results["floor, cyclic gc off"]
    print(
        f"--jobs 1: {serial:.2f}x the floor (target <= {TARGET_SERIAL}); "
        f"{serial_gc_off:.2f}x the floor with the cyclic gc off too"
    )
    print(
        f"one small file: {one_file:.3f} s (target < {TARGET_ONE_FILE}); "
        f"a bare interpreter (python -c pass): {bare:.3f} s"
    )


if __name__ == "__main__":
    main()
