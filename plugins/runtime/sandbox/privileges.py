"""What a confined process keeps of its user's powers: limits, capabilities, its uid.

Each function is one irreversible step of :func:`plugins.runtime.sandbox.confine`;
failures are OSErrors, which the caller reports as the sandbox being unavailable.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
from collections.abc import Iterable

_PR_SET_DUMPABLE = 4
_PR_CAPBSET_READ = 23
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_GET_NO_NEW_PRIVS = 39
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inheritable")]


def _prctl(option: int, arg: int = 0) -> int:
    result = int(_libc.prctl(option, ctypes.c_ulong(arg), *[ctypes.c_ulong(0)] * 3))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl({option}): {os.strerror(code)}")
    return result


def set_rlimits(max_open_files: int) -> None:
    """Hard limits, so plugin code cannot raise them: open files, and no core dumps."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY:
        max_open_files = min(max_open_files, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max_open_files, max_open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def limit_address_space(max_bytes: int) -> None:
    """Let the address space grow by ``max_bytes`` at most, hard limit included."""
    with open("/proc/self/statm", "rb") as statm:
        in_use = int(statm.read().split()[0]) * resource.getpagesize()
    limit = in_use + max_bytes
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def drop_bounding_set() -> None:
    """No program this process executes can gain a capability (needs CAP_SETPCAP: root)."""
    cap = 0
    while _libc.prctl(_PR_CAPBSET_READ, ctypes.c_ulong(cap), *[ctypes.c_ulong(0)] * 3) >= 0:
        try:
            _prctl(_PR_CAPBSET_DROP, cap)
        except PermissionError:  # unprivileged: no_new_privs (set later) makes the set moot
            return
        cap += 1


def switch_user(uid: int, gid: int, *, readable: Iterable[str], writable: Iterable[str]) -> None:
    """Become ``uid``:``gid`` with no supplementary groups, then check it can still work.

    Raises PermissionError naming the first path the new user cannot read (or write).
    """
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    needs = ((readable, os.R_OK, "read", "readable"), (writable, os.W_OK, "write", "writable"))
    for paths, mode, verb, adjective in needs:
        for path in paths:
            if os.path.exists(path) and not os.access(path, _with_search(path, mode)):
                raise PermissionError(
                    f"uid {uid} cannot {verb} {path}: make it {adjective} by that user,"
                    " or set PLUGIN_SANDBOX_USER to one that can"
                )


def _with_search(path: str, mode: int) -> int:
    return mode | os.X_OK if os.path.isdir(path) else mode


def drop_capabilities() -> None:
    """Empty the ambient, effective, permitted and inheritable capability sets."""
    try:
        _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError as exc:  # EINVAL: a kernel older than ambient capabilities
        if exc.errno != errno.EINVAL:
            raise
    header = _CapHeader(version=_CAPABILITY_VERSION_3, pid=0)
    empty = (_CapData * 2)()
    if _libc.capset(ctypes.byref(header), empty) < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"capset: {os.strerror(code)}")


def set_no_new_privs() -> None:
    """execve can no longer grant privileges (setuid bits, file capabilities)."""
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)


def has_no_new_privs() -> bool:
    return _prctl(_PR_GET_NO_NEW_PRIVS) == 1


def set_undumpable() -> None:
    """No core dump, and other processes of the same uid cannot ptrace or read its /proc."""
    _prctl(_PR_SET_DUMPABLE, 0)
