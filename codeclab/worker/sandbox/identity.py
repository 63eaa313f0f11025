"""Each codec child becomes a user of its own, with no capabilities, and can never regain them.

The worker runs as root (inside its container), so it can give each child a fresh uid that no
other process has. That uid is what makes the child unable to signal, trace or reconfigure
the worker (the kernel checks uids), and what makes RLIMIT_NPROC a real per-child cap on
threads: the kernel exempts uid 0 from it, and counts every other uid across the machine.

Where the Python installation sits in a folder other users cannot read (under a 0700 home, as
on the development machine), the child keeps file-system uid 0 so it can still load Python;
Landlock and the seccomp metadata family then do what DAC would have done. Everything else
(real, effective and saved uid, all groups, every capability set) is dropped.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# A range no distribution allocates: above 2^30, below the 32-bit "no uid" value.
UID_BASE, UID_SPAN = 1 << 30, 1 << 29
_PR_CAPBSET_DROP, _PR_SET_KEEPCAPS, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 24, 8, 47, 4
_PR_SET_NO_NEW_PRIVS = 38
_CAP_SETUID, _CAP_SETPCAP, _LINUX_CAPABILITY_VERSION_3 = 7, 8, 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


@dataclass(frozen=True)
class Identity:
    """Who the child becomes."""

    uid: int
    file_uid: int  # the file-system uid: the same uid, or 0 where Python is readable by root alone


def fresh_uid() -> int:
    return UID_BASE + secrets.randbelow(UID_SPAN)


def can_change_uid() -> bool:
    """Whether this process may hand a child another uid (root with CAP_SETUID and CAP_SETPCAP)."""
    effective = int(_status_field("CapEff"), 16)
    return os.geteuid() == 0 and all(effective >> cap & 1 for cap in (_CAP_SETUID, _CAP_SETPCAP))


def readable_by_others(paths: Iterable[Path]) -> bool:
    """Whether a user with no relation to the owner could reach and read each path."""
    for path in paths:
        mode = path.stat().st_mode
        needed = stat.S_IROTH | stat.S_IXOTH if stat.S_ISDIR(mode) else stat.S_IROTH
        if mode & needed != needed or any(not p.stat().st_mode & stat.S_IXOTH for p in path.parents):
            return False
    return True


def become(identity: Identity) -> None:
    """Drop to `identity` for good: groups, uids, every capability set, then no_new_privs. Raises OSError."""
    for cap in range(_last_cap() + 1):  # the bounding set first: it needs CAP_SETPCAP, soon gone
        _check(_libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), f"prctl(PR_CAPBSET_DROP, {cap})")
    _check(_libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    os.setgroups([])
    os.setresgid(identity.uid, identity.uid, identity.uid)
    if identity.file_uid != identity.uid:
        # keep CAP_SETUID across the uid change just long enough to set the file-system uid
        _check(_libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
        os.setresuid(identity.uid, identity.uid, identity.uid)
        _capset(1 << _CAP_SETUID)
        _libc.setfsuid(identity.file_uid)
        _check(_libc.prctl(_PR_SET_KEEPCAPS, 0, 0, 0, 0), "prctl(PR_SET_KEEPCAPS, 0)")
    else:
        os.setresuid(identity.uid, identity.uid, identity.uid)
    _capset(0)
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    if _libc.setfsuid(-1) != identity.file_uid:  # setfsuid(-1) changes nothing and returns the current one
        raise OSError(1, f"the file-system uid is not {identity.file_uid}")


def _capset(mask: int) -> None:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)(_CapData(mask, mask, 0), _CapData(0, 0, 0))
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def _last_cap() -> int:
    return int(Path("/proc/sys/kernel/cap_last_cap").read_text())


def _status_field(name: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    raise OSError(2, f"/proc/self/status has no {name}")


def _check(result: int, what: str) -> None:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what} failed: {os.strerror(errno)}")
