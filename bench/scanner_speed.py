"""Scanner speed on a large codebase nobody here wrote: the installed Django package.

Everything is timed as a whole process, the way a developer or pre-commit runs it,
in one run and on the same files:
  floor       a Python process that reads and ast.parses every file, nothing else
              (and the same with the cyclic garbage collector off, as the scanner runs);
  cold        python -m governance_scanner --no-cache --jobs 1, and --jobs <cores>;
              manage.py scan_violations --jobs 1 (the same scan after booting Django);
              --jobs 1 writing a new cache (a fresh --cache-dir each time);
  warm        a copy of the package as a project that opted in (pyproject.toml with
              [tool.governance_scanner]), its cache filled: the whole project, and one
              small file of it (which still indexes the whole project, as pre-commit runs);
  one file    one small file outside any project, and a bare interpreter.
Prints seconds, files/s and each time relative to the floor (best of --repeat runs,
the commands taking turns). Bytecode is cached (in a temporary PYTHONPYCACHEPREFIX,
not in the source tree) as on a developer's machine, even where
PYTHONDONTWRITEBYTECODE is set.

    .venv/bin/python bench/scanner_speed.py [--repeat 7] [PATH]
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_SERIAL = 1.3  # x the floor, --jobs 1, no cache
TARGET_WARM = 0.5  # x the floor, --jobs 1, the cache filled
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


Command = list[str] | Callable[[], list[str]]  # a callable: a new command line each run


def best_of(
    repeat: int, commands: dict[str, tuple[Command, Path]], env: dict[str, str]
) -> dict[str, float]:
    """The fastest of ``repeat`` runs of each command as a process (in its folder), in seconds.

    The commands take turns, round after round, so that a busy moment of the
    machine slows all of them rather than one.
    """
    best = dict.fromkeys(commands, float("inf"))
    for _ in range(repeat):
        for label, (command, cwd) in commands.items():
            line = command() if callable(command) else command
            started = time.perf_counter()
            completed = subprocess.run(line, cwd=cwd, env=env, capture_output=True, check=False)
            best[label] = min(best[label], time.perf_counter() - started)
            if completed.returncode not in (0, 1):
                raise SystemExit(f"{line} failed: {completed.stderr.decode()}")
    return best


def main() -> None:
    import django

    from governance_scanner.config import ScannerConfig
    from governance_scanner.scanner import _Discovery

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(Path(django.__file__).parent))
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    target = Path(args.path).resolve()
    files = _Discovery(ScannerConfig(root=target.parent)).files([target])
    cores = os.cpu_count() or 1
    python = sys.executable
    scanner = [python, "-m", "governance_scanner"]
    cold = [*scanner, "--no-config", "--no-cache"]
    small_text = "def handler(plugin, payload):\n    return plugin.name, payload\n"
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)  # no pyproject.toml here or above: nothing configured
        env = {
            **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": str(ROOT),
            "PYTHONPYCACHEPREFIX": str(work / "bytecode"),
        }
        listing = work / "files.txt"
        listing.write_text("\n".join(files))
        small = work / "small.py"
        small.write_text(small_text)
        project = work / "project"  # the same files, as a project that opted in
        shutil.copytree(target, project / target.name, ignore=shutil.ignore_patterns("__pycache__"))
        (project / "pyproject.toml").write_text("[tool.governance_scanner]\ntool-runner = []\n")
        (project / "small.py").write_text(small_text)
        warm = [*scanner, "--jobs", "1"]
        subprocess.run(warm, cwd=project, env=env, capture_output=True, check=False)  # fill it
        fresh_caches = (work / f"cache-{n}" for n in itertools.count())
        timed: dict[str, tuple[Command, Path]] = {
            "floor: read + ast.parse": ([python, "-c", FLOOR, str(listing), "on"], work),
            "floor, cyclic gc off": ([python, "-c", FLOOR, str(listing), "off"], work),
            "cold --jobs 1": ([*cold, "--jobs", "1", str(target)], work),
            f"cold --jobs {cores}": ([*cold, "--jobs", str(cores), str(target)], work),
            "cold manage.py scan_violations --jobs 1": (
                [
                    python,
                    str(ROOT / "manage.py"),
                    "scan_violations",
                    "--no-config",
                    "--no-cache",
                    "--jobs",
                    "1",
                    str(target),
                ],
                work,
            ),
            "cold --jobs 1, writing a new cache": (
                lambda: [
                    *scanner,
                    "--no-config",
                    "--cache-dir",
                    str(next(fresh_caches)),
                    "--jobs",
                    "1",
                    str(target),
                ],
                work,
            ),
            "warm --jobs 1, the whole project": (warm, project),
            "bare interpreter": ([python, "-c", "pass"], work),
            "one small file, no project": ([*cold, "--jobs", "1", str(small)], work),
            "warm, one small file of the project": ([*warm, "small.py"], project),
        }
        results = best_of(args.repeat, timed, env)
        bare = results.pop("bare interpreter")
        one_file = results.pop("one small file, no project")
        warm_one_file = results.pop("warm, one small file of the project")

    print(f"scanner_speed: {len(files)} files under {target} (Django {django.__version__})")
    print(f"whole processes, best of {args.repeat} rounds")
    print(f"{'':42} {'seconds':>8} {'files/s':>9} {'x floor':>8}")
    floor = results["floor: read + ast.parse"]
    for label, seconds in results.items():
        print(f"{label:42} {seconds:8.3f} {len(files) / seconds:9.0f} {seconds / floor:8.2f}")
    serial = results["cold --jobs 1"] / floor
    serial_gc_off = results["cold --jobs 1"] / results["floor, cyclic gc off"]
    warm_whole = results["warm --jobs 1, the whole project"] / floor
    print(
        f"cold --jobs 1: {serial:.2f}x the floor (target <= {TARGET_SERIAL}); "
        f"{serial_gc_off:.2f}x the floor with the cyclic gc off too"
    )
    print(
        f"warm --jobs 1, the whole project: {warm_whole:.2f}x the floor (target <= {TARGET_WARM})"
    )
    print(
        f"warm, one small file of the project: {warm_one_file:.3f} s (target < {TARGET_ONE_FILE}); "
        f"one small file, no project: {one_file:.3f} s; "
        f"a bare interpreter (python -c pass): {bare:.3f} s"
    )


if __name__ == "__main__":
    main()
