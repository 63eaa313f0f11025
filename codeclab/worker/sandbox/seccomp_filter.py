"""The seccomp-bpf filter, as families of system calls that each close one class of escape.

Everything not named here stays allowed: numpy, torch and OpenCV need a broad set, and an
allow-list narrow enough to matter would break them in ways a researcher cannot debug. So
each family below is a class of harm, denied wholesale, and system calls newer than this
table (x86_64 numbers from 451 on, Linux 6.6+) answer ENOSYS, so a newer kernel opens nothing.

Calls that only an attack makes kill the child (SIGSYS, reported as SANDBOX_VIOLATION).
Calls that a library might make innocently (metadata, IPC, scheduling) fail with EPERM.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from enum import StrEnum
from typing import Any


class Family(StrEnum):
    NETWORK = "network"  # sockets of any kind
    PROCESSES = "processes"  # new processes and exec (threads stay possible)
    DEBUG = "debug"  # reading or steering other processes
    KERNEL = "kernel"  # mounts, namespaces, modules, keyrings, BPF, io_uring, file handles, clocks
    IPC = "ipc"  # System V shared memory, queues, semaphores; POSIX message queues
    METADATA = "metadata"  # xattrs, modes, owners, times and inode flags of files
    IDENTITY = "identity"  # changing uids, gids or capabilities again
    TARGETS = "targets"  # signals, pidfds, rlimits and scheduling aimed at any other process
    NEW_SYSCALLS = "new_syscalls"  # anything numbered past this table


ALL_FAMILIES = frozenset(Family)

_KILL_ALWAYS = {
    Family.NETWORK: ("socket", "socketpair", "connect", "bind", "listen", "accept", "accept4"),
    Family.PROCESSES: ("execve", "execveat", "fork", "vfork"),
    Family.DEBUG: (
        "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "perf_event_open",
        "process_madvise", "process_mrelease",
    ),
    Family.KERNEL: (
        "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "kexec_load", "kexec_file_load",
        "init_module", "finit_module", "delete_module", "bpf", "keyctl", "add_key", "request_key",
        "userfaultfd", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
        "syslog", "acct", "swapon", "swapoff", "reboot", "quotactl", "quotactl_fd", "modify_ldt", "iopl",
        "ioperm", "sethostname", "setdomainname", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
        "vhangup", "name_to_handle_at", "open_by_handle_at", "fanotify_init",
        # io_uring runs operations (sockets among them) that this filter never sees
        "io_uring_setup", "io_uring_enter", "io_uring_register",
    ),
}  # fmt: skip
_EPERM_ALWAYS = {
    Family.IPC: (
        "shmget", "shmat", "shmdt", "shmctl", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop",
        "semtimedop", "semctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify",
        "mq_getsetattr",
    ),
    Family.METADATA: (
        "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat", "utime", "utimes",
        "utimensat", "futimesat", "setxattr", "lsetxattr", "fsetxattr", "getxattr", "lgetxattr", "fgetxattr",
        "listxattr", "llistxattr", "flistxattr", "removexattr", "lremovexattr", "fremovexattr",
    ),
    Family.IDENTITY: (
        "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid",
        "setgroups", "capset",
    ),
}  # fmt: skip
# Newer than libseccomp 2.5 knows by name: x86_64 numbers (arch/x86/entry/syscalls/syscall_64.tbl).
_METADATA_BY_NUMBER = {463: "setxattrat", 464: "getxattrat", 465: "listxattrat", 466: "removexattrat",
                       468: "file_getattr", 469: "file_setattr"}  # fmt: skip
_FIRST_NEW_SYSCALL, _LAST_NEW_SYSCALL = 451, 511
# ioctls that change inode flags or attributes (chattr): the owner may, and the child owns the Python files here
_INODE_IOCTLS = (
    0x40086602,
    0x40046602,
    0x401C5820,
    0x40087602,
    0x40047602,
)  # FS_IOC_SETFLAGS(32), FSSETXATTR, SETVERSION
_CLONE_THREAD = 0x00010000
_PID_TARGETED_KILL = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")  # first argument: a process id
_PID_TARGETED_EPERM = ("sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr",
                       "get_robust_list", "migrate_pages", "move_pages")  # fmt: skip


def install(families: Iterable[Family], own_pid: int) -> None:
    """Load the filter for this process (and every thread it creates from now on). Raises OSError."""
    import pyseccomp as seccomp

    chosen = frozenset(families)
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    # i386 and x32 entry points would bypass x86_64 rules: such a call kills the whole process
    rules.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.KILL_PROCESS)
    for number, action in _unconditional(chosen, seccomp).items():
        rules.add_rule(action, number)
    if Family.PROCESSES in chosen:
        # threads stay possible (numpy, torch); a new process does not; clone3 falls back to clone in glibc
        rules.add_rule(seccomp.KILL_PROCESS, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_THREAD, 0))
    if Family.METADATA in chosen:
        for request in _INODE_IOCTLS:
            # the kernel reads the request as 32 bits: compare only those, or high bits would slip past
            rules.add_rule(seccomp.ERRNO(errno.EPERM), "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
    if Family.TARGETS in chosen:
        _add_targets(rules, seccomp, own_pid)
    rules.load()


def _unconditional(chosen: frozenset[Family], seccomp: Any) -> dict[int, int]:
    """System call number -> action; a named family overrides the blanket ENOSYS for new numbers."""
    arch = seccomp.system_arch()
    table: dict[int, int] = {}
    if Family.NEW_SYSCALLS in chosen:
        table.update(dict.fromkeys(range(_FIRST_NEW_SYSCALL, _LAST_NEW_SYSCALL + 1), seccomp.ERRNO(errno.ENOSYS)))
    if Family.PROCESSES in chosen:
        table[_number(seccomp, arch, "clone3")] = seccomp.ERRNO(errno.ENOSYS)
    for families, action in ((_KILL_ALWAYS, seccomp.KILL_PROCESS), (_EPERM_ALWAYS, seccomp.ERRNO(errno.EPERM))):
        for family, names in families.items():
            if family in chosen:
                table.update(dict.fromkeys((_number(seccomp, arch, name) for name in names), action))
    if Family.METADATA in chosen:
        table.update(dict.fromkeys(_METADATA_BY_NUMBER, seccomp.ERRNO(errno.EPERM)))
    return table


def _add_targets(rules: Any, seccomp: Any, own_pid: int) -> None:
    """Signals, pidfds, rlimits and scheduling only for this process itself."""
    for name in _PID_TARGETED_KILL:
        rules.add_rule(seccomp.KILL_PROCESS, name, seccomp.Arg(0, seccomp.NE, own_pid))
    rules.add_rule(seccomp.KILL_PROCESS, "tkill")  # obsolete; glibc signals threads with tgkill
    rules.add_rule(seccomp.KILL_PROCESS, "pidfd_open")
    rules.add_rule(seccomp.KILL_PROCESS, "pidfd_send_signal")
    rules.add_rule(seccomp.KILL_PROCESS, "prlimit64", seccomp.Arg(0, seccomp.NE, 0))  # glibc passes 0 for itself
    for name in _PID_TARGETED_EPERM:
        rules.add_rule(seccomp.ERRNO(errno.EPERM), name, seccomp.Arg(0, seccomp.NE, 0))
    for name in ("setpriority", "ioprio_set"):  # (which, who): who 0 is the caller
        rules.add_rule(seccomp.ERRNO(errno.EPERM), name, seccomp.Arg(1, seccomp.NE, 0))


def _number(seccomp: Any, arch: int, name: str) -> int:
    number = int(seccomp.resolve_syscall(arch, name))
    if number < 0:
        raise OSError(errno.ENOSYS, f"libseccomp does not know the system call {name!r}")
    return number
