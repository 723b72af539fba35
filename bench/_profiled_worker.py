"""``manage.py db_worker`` under cProfile, its runner threads included (cProfile sees one thread).

    python bench/_profiled_worker.py STATS_PATH db_worker --batch ...

Each runner thread and the main thread get a profiler of their own; at exit their
statistics are merged into STATS_PATH (pstats format).
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
from typing import Any


def main() -> None:
    stats_path, command = sys.argv[1], sys.argv[2:]
    import django

    django.setup()
    from django.core.management import execute_from_command_line

    from execution.task_engine.django_tasks_db.runners import TaskRunners

    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    serve = TaskRunners._serve

    def profiled_serve(self: TaskRunners) -> Any:
        profile = cProfile.Profile()
        with lock:
            profiles.append(profile)
        return profile.runcall(serve, self)

    TaskRunners._serve = profiled_serve  # type: ignore[method-assign]
    main_profile = cProfile.Profile()
    try:
        main_profile.runcall(execute_from_command_line, ["manage.py", *command])
    finally:
        merged = pstats.Stats(main_profile)
        with lock:
            for profile in profiles:
                merged.add(profile)
        merged.dump_stats(stats_path)


if __name__ == "__main__":
    main()
