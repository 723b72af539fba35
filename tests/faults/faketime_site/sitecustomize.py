"""Makes ``time.sleep`` work in a process run by Debian's faketime with a real monotonic clock.

The skew tests fake only the wall clock (``FAKETIME_DONT_FAKE_MONOTONIC=1``):
with a faked monotonic clock every timed lock wait hangs, because glibc's
``sem_clockwait`` compares a faked deadline with the real clock. With a real
one, libfaketime 0.9.10 answers EINVAL to the ``clock_nanosleep`` behind
``time.sleep``. ``select`` sleeps just as well and is not faked.
"""

import select
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        select.select([], [], [], left)


time.sleep = _sleep
