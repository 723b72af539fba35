"""A seccomp deny-list: the system calls a plugin host never needs and an attack would.

Built with libseccomp's Python API (``pyseccomp``). Everything not listed stays
allowed: Landlock and an unprivileged uid are the walls; this filter closes what they
leave open (another process's memory, limits and priority, new namespaces, leaving the
host's process group, sockets of other families, io_uring, file attributes, System V
IPC, the kernel's own interfaces).

Arguments the kernel reads as 32-bit ints are compared on their low 32 bits only
(a caller may set the upper half of the register, which seccomp sees and the kernel
ignores).
"""

from __future__ import annotations

import errno
import fcntl
import socket
from typing import Any

try:
    import pyseccomp as seccomp  # type: ignore[import-untyped]
except (ImportError, RuntimeError):  # not installed, or no libseccomp on this machine
    seccomp = None

_DENIED = (
    # other processes' memory
    "ptrace process_vm_readv process_vm_writev"
    # the host's process group holds every process a plugin starts: killing it kills them all
    " setsid setpgid"
    # filesystems and namespaces
    " mount umount2 pivot_root chroot unshare setns open_by_handle_at name_to_handle_at"
    # the kernel's own interfaces; io_uring opens sockets and files past this filter
    " bpf perf_event_open keyctl add_key request_key userfaultfd"
    " io_uring_setup io_uring_enter io_uring_register"
    " init_module finit_module delete_module kexec_load kexec_file_load"
    " reboot swapon swapoff acct"
    # what Landlock does not check: a file's mode, owner, times and extended attributes
    # (the server's own database, when it runs as the hosts' user)
    " chmod fchmod fchmodat fchmodat2 chown fchown lchown fchownat utime utimes futimesat"
    " setxattr lsetxattr fsetxattr setxattrat removexattr lremovexattr fremovexattr"
    " removexattrat"
    # System V IPC: its objects outlive the host, hold memory past its limit, and let
    # two plugins talk
    " msgget msgsnd msgrcv msgctl semget semop semtimedop semctl shmget shmat shmdt shmctl ipc"
).split()
# Calls that act on another process given its pid (or on a user's or group's): allowed
# on the calling process only (0), so that no host can change the server's or another
# host's limits, priority or CPUs.
_ON_ITSELF_ONLY = {
    "prlimit64": 0,
    "sched_setaffinity": 0,
    "sched_setscheduler": 0,
    "sched_setparam": 0,
    "sched_setattr": 0,
}
_PRIO_PROCESS = 0
_IOPRIO_WHO_PROCESS = 1
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, and CLONE_PARENT (a
# child of the host's parent, the server, would escape the host's subreaping)
_CLONE_REFUSED = (
    0x20000,
    0x2000000,
    0x4000000,
    0x8000000,
    0x10000000,
    0x20000000,
    0x40000000,
    0x8000,
)
_F_SETOWN_EX = 15
_FD_REFLAGS = (
    fcntl.F_SETFL,
    fcntl.F_SETOWN,
    _F_SETOWN_EX,
    fcntl.F_SETSIG,
    fcntl.F_DUPFD,
    fcntl.F_DUPFD_CLOEXEC,
)
# ioctls that change the same flags and owner as those fcntl commands.
_FIONBIO, _FIOASYNC, _FIOSETOWN, _SIOCSPGRP = 0x5421, 0x5452, 0x8901, 0x8902
_LOW_32 = 0xFFFF_FFFF


def available() -> bool:
    """Whether libseccomp could be loaded."""
    return seccomp is not None


def load_filter(*, network: bool, protected_fds: tuple[int, ...]) -> None:
    """Install the filter on this thread and every process it starts: irreversible."""
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    eperm = seccomp.ERRNO(errno.EPERM)
    for name in _DENIED:
        _deny(rules, eperm, name)
    for option in (_PR_SET_CHILD_SUBREAPER, _PR_SET_PDEATHSIG, _PR_SET_DUMPABLE):
        _deny(rules, eperm, "prctl", _low_32_equals(0, option))
    for flag in _CLONE_REFUSED:
        _deny(rules, eperm, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    # kill(-1): every process the host's user may signal (where Landlock's scope, ABI 6,
    # does not stop it already)
    _deny(rules, eperm, "kill", _low_32_equals(0, 0xFFFF_FFFF))
    _deny(rules, seccomp.ERRNO(errno.ENOSYS), "clone3")  # libc then falls back to clone
    for name, pid_argument in _ON_ITSELF_ONLY.items():
        _deny(rules, eperm, name, seccomp.Arg(pid_argument, seccomp.NE, 0))
    _deny(rules, eperm, "setpriority", seccomp.Arg(0, seccomp.NE, _PRIO_PROCESS))
    _deny(rules, eperm, "setpriority", seccomp.Arg(1, seccomp.NE, 0))
    _deny(rules, eperm, "ioprio_set", seccomp.Arg(0, seccomp.NE, _IOPRIO_WHO_PROCESS))
    _deny(rules, eperm, "ioprio_set", seccomp.Arg(1, seccomp.NE, 0))
    _deny(rules, eperm, "utimensat", seccomp.Arg(1, seccomp.NE, 0))  # by path; futimens stays
    _deny_sockets(rules, network)
    for fd in protected_fds:
        _protect(rules, eperm, fd)
    if protected_fds:
        # A first fd with its upper half set passes as "above" them; the kernel reads the low half.
        _deny(rules, eperm, "close_range", seccomp.Arg(0, seccomp.GT, _LOW_32))
    rules.load()


def _deny_sockets(rules: Any, network: bool) -> None:
    """socket() of every family but IPv4 and IPv6 with ``network``; socketpair() too.

    sendto() on a datagram socketpair reaches any unix socket by path, which Landlock
    (through ABI 7) does not check, and a stream pair passes descriptors (SCM_RIGHTS),
    a way round the lifeline's protection. Pipes serve what a plugin needs.
    """
    eacces = seccomp.ERRNO(errno.EACCES)
    _deny(rules, eacces, "socketpair")
    if not network:
        _deny(rules, eacces, "socket")
        return
    inet, inet6 = int(socket.AF_INET), int(socket.AF_INET6)
    _deny(rules, eacces, "socket", seccomp.Arg(0, seccomp.LT, inet))
    for family in range(inet + 1, inet6):
        _deny(rules, eacces, "socket", seccomp.Arg(0, seccomp.EQ, family))
    _deny(rules, eacces, "socket", seccomp.Arg(0, seccomp.GT, inet6))


def _protect(rules: Any, eperm: int, fd: int) -> None:
    """``fd`` cannot be closed, replaced by a dup, or have its flags, owner or signal changed."""
    _deny(rules, eperm, "close", _low_32_equals(0, fd))
    _deny(rules, eperm, "dup", _low_32_equals(0, fd))  # a copy shares its flags
    for name in ("dup2", "dup3"):
        _deny(rules, eperm, name, _low_32_equals(0, fd))
        _deny(rules, eperm, name, _low_32_equals(1, fd))
    _deny(
        rules,
        eperm,
        "close_range",
        seccomp.Arg(0, seccomp.LE, fd),
        seccomp.Arg(1, seccomp.GE, fd),
    )
    for command in _FD_REFLAGS:
        _deny(rules, eperm, "fcntl", _low_32_equals(0, fd), _low_32_equals(1, command))
    for request in (_FIONBIO, _FIOASYNC, _FIOSETOWN, _SIOCSPGRP):
        _deny(rules, eperm, "ioctl", _low_32_equals(0, fd), _low_32_equals(1, request))


def _low_32_equals(arg: int, value: int) -> Any:
    return seccomp.Arg(arg, seccomp.MASKED_EQ, _LOW_32, value)


def _deny(rules: Any, action: int, name: str, *conditions: Any) -> None:
    number = seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)
    if number < 0:  # not a system call of this architecture
        return
    rules.add_rule(action, number, *conditions)
