"""The kernel's confinement of a plugin host: what it may read, write, reach and become.

A plugin host calls :func:`confine` once, at its start, before it imports any plugin
code; from then on the kernel holds it and every process it starts to its
:class:`SandboxPolicy`, and nothing it does can undo that. The layers, in the order
they are applied (each needs what the one before still allowed):

1. hard rlimits (open files, no core dumps), and the capability bounding set dropped
   while the process may still drop it (privileges.py);
2. when running as root, an unprivileged uid and gid, checked to still read the
   interpreter and the policy's trees; then no capability in any set;
3. no_new_privs (Landlock and seccomp need it) and not dumpable;
4. Landlock (landlock.py): the filesystem, TCP, abstract unix sockets and signals;
5. seccomp last (seccomp.py), so the steps above may use what it denies.

A machine that cannot confine as asked raises :class:`SandboxUnavailable`: the host
must then not run plugins (fail closed), since a failed :func:`confine` may have
applied only some layers.
"""

from __future__ import annotations

import os
import sysconfig
from dataclasses import asdict, dataclass

from plugins.runtime.sandbox import landlock, privileges, seccomp

HOST_READ_ONLY = (
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
    "/etc/localtime",
    "/etc/ld.so.cache",
    "/usr/share/zoneinfo",
    "/usr/lib",
    "/lib",
    "/lib64",
    "/usr/lib64",
)
"""What every host reads: randomness, the local time zone, shared libraries."""
HOST_READ_WRITE = ("/dev/null",)


class SandboxUnavailable(Exception):
    """The kernel or the machine cannot confine as asked (fail closed)."""


@dataclass(frozen=True)
class SandboxPolicy:
    read_only: tuple[str, ...] = ()
    """Trees a plugin may read and execute (the interpreter, packages, its own code)."""
    read_write: tuple[str, ...] = ()
    """Trees it may also write (its temporary directory)."""
    network: bool = False
    """TCP connect and bind, and AF_INET and AF_INET6 sockets."""
    user: tuple[int, int] | None = None
    """(uid, gid) to switch to; applied only when running as root."""
    max_open_files: int = 256
    protected_fds: tuple[int, ...] = ()
    """Descriptors plugin code may not close, dup over or re-flag (the host's channel)."""


@dataclass(frozen=True)
class Confinement:
    """What is in force, for logs and /v1/health."""

    landlock_abi: int
    filesystem: bool
    """Only the policy's trees (and the host's) can be opened."""
    network: bool
    """The network is confined: socket() only for socketpair, no TCP (Landlock ABI >= 4)."""
    scopes: bool
    """No signal or abstract unix socket reaches a process outside (Landlock ABI >= 6)."""
    seccomp: bool
    uid: int
    no_new_privs: bool

    def describe(self) -> dict[str, object]:
        return asdict(self)


def kernel_support() -> dict[str, object]:
    """What this machine can confine with; cheap and without side effects."""
    return {
        "landlock_abi": landlock.abi_version(),
        "seccomp": seccomp.available(),
        "root": os.geteuid() == 0,
    }


def confine(policy: SandboxPolicy) -> Confinement:
    """Confine this process to ``policy``, irreversibly (see the module's docstring)."""
    abi = landlock.abi_version()
    if abi < 1:
        raise SandboxUnavailable(
            "this kernel has no Landlock (Linux 5.13 or later, with landlock in its lsm= list)"
        )
    if not seccomp.available():
        raise SandboxUnavailable("libseccomp cannot be loaded (install libseccomp2)")
    read_only = (*HOST_READ_ONLY, *policy.read_only)
    read_write = (*HOST_READ_WRITE, *policy.read_write)
    try:
        if len(os.listdir("/proc/self/task")) != 1:
            raise SandboxUnavailable(
                "confine() must run before the process starts a thread:"
                " Landlock and seccomp confine only the thread that applies them"
            )
        privileges.set_rlimits(policy.max_open_files)
        privileges.drop_bounding_set()
        if policy.user is not None and os.geteuid() == 0:
            uid, gid = policy.user
            privileges.switch_user(
                uid,
                gid,
                readable=(sysconfig.get_path("stdlib"), *policy.read_only),
                writable=policy.read_write,
            )
        privileges.drop_capabilities()
        privileges.set_no_new_privs()
        privileges.set_undumpable()
        landlock.restrict(read_only, read_write, network=policy.network, abi=abi)
        seccomp.load_filter(network=policy.network, protected_fds=policy.protected_fds)
    except (OSError, ValueError) as exc:  # resource.setrlimit refuses with ValueError
        raise SandboxUnavailable(f"the sandbox could not be applied: {exc}") from exc
    return Confinement(
        landlock_abi=abi,
        filesystem=True,
        network=not policy.network,
        scopes=abi >= 6,
        seccomp=True,
        uid=os.getuid(),
        no_new_privs=privileges.has_no_new_privs(),
    )


def limit_memory(max_bytes: int | None) -> None:
    """Cap the address space at its current size plus ``max_bytes``; None leaves it.

    Soft and hard limit alike, so plugin code cannot raise it. Call it before
    :func:`confine` (which closes /proc, where the current size is read) and before
    any plugin code runs (which could inflate the size it is measured from).
    """
    if max_bytes is None:
        return
    try:
        privileges.limit_address_space(max_bytes)
    except (OSError, ValueError) as exc:
        raise SandboxUnavailable(f"the memory limit could not be set: {exc}") from exc
