"""Landlock: the kernel's access control an unprivileged process applies to itself.

It is called here through its three documented system calls with ctypes
(https://docs.kernel.org/userspace-api/landlock.html). The ``landlock`` package on
PyPI (1.0.0.dev5) handles only filesystem rules: it has no TCP rules (ABI 4) and no
scopes (ABI 6), and the sandbox needs both, so it is not used.

A ruleset lists what it handles; whatever it handles and no rule allows is denied.
Every right the running kernel's ABI knows is handled, so nothing the kernel can
refuse is left open by default.
"""

from __future__ import annotations

import ctypes
import os
import platform
import stat
from collections.abc import Iterable

_SYSCALLS = {"create_ruleset": 444, "add_rule": 445, "restrict_self": 446}
_ARCHITECTURES = {"x86_64", "aarch64"}  # where those numbers hold
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1

# Filesystem rights (ABI 1 has bits 0-12).
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REFER = 1 << 13  # ABI 2: link or rename into another directory
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
READ_ONLY = READ_FILE | READ_DIR | EXECUTE
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
"""The rights a rule on anything but a directory may carry (the kernel refuses others)."""

BIND_TCP = 1 << 0  # ABI 4
CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    # The kernel accepts this full size on older ABIs as long as the fields it lacks are 0.
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # packed in the kernel's header
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _syscall(name: str, *args: object) -> int:
    result = int(_libc.syscall(ctypes.c_long(_SYSCALLS[name]), *args))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"landlock_{name}: {os.strerror(code)}")
    return result


def abi_version() -> int:
    """The Landlock ABI the running kernel offers; 0 when it has none (or is disabled)."""
    if platform.machine() not in _ARCHITECTURES:
        return 0
    try:
        return _syscall("create_ruleset", None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    except OSError:  # ENOSYS: not built in; EOPNOTSUPP: not enabled at boot
        return 0


def filesystem_rights(abi: int) -> int:
    """Every filesystem right ``abi`` knows."""
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def restrict(
    read_only: Iterable[str], read_write: Iterable[str], *, network: bool, abi: int
) -> None:
    """Confine this thread, and every process it starts, to these trees: irreversible.

    Without ``network``, TCP bind and connect are refused (ABI 4). Abstract unix
    sockets and signals never reach a process outside the sandbox (ABI 6).
    The caller must have set no_new_privs first.
    """
    fs_rights = filesystem_rights(abi)
    attr = _RulesetAttr(
        handled_access_fs=fs_rights,
        handled_access_net=BIND_TCP | CONNECT_TCP if abi >= 4 and not network else 0,
        scoped=SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0,
    )
    ruleset = _syscall(
        "create_ruleset", ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), 0
    )
    try:
        for path in read_only:
            _allow(ruleset, path, READ_ONLY)
        for path in read_write:
            _allow(ruleset, path, fs_rights)
        _syscall("restrict_self", ruleset, ctypes.c_uint32(0))
    finally:
        os.close(ruleset)


def _allow(ruleset: int, path: str, rights: int) -> None:
    """Grant ``rights`` beneath ``path``; a path that does not exist is skipped."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= FILE_RIGHTS
        rule = _PathBeneathAttr(allowed_access=rights, parent_fd=fd)
        _syscall("add_rule", ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0))
    finally:
        os.close(fd)
