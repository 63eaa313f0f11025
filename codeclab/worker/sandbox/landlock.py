"""Landlock (Linux 5.13+): an unprivileged allow-list of paths, TCP ports and scopes for this process.

After `restrict()` the process reads only the paths it was given, writes only where it was
given write rights, binds and connects no TCP port (ABI 4+), and signals or reaches abstract
unix sockets of no process outside its own Landlock domain (ABI 6+: the worker included).
The restriction is inherited by every thread created afterwards and cannot be lifted.
"""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# Filesystem rights, by the ABI that introduced them (include/uapi/linux/landlock.h).
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_V1 = (1 << 13) - 1  # execute .. make_sym
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FS_BY_ABI = {1: _FS_V1, 2: _REFER, 3: _TRUNCATE, 5: _IOCTL_DEV}
_FILE_ONLY_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV
# ABI 4: TCP bind and connect; ABI 6: scopes.
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
NET_ABI, SCOPE_ABI = 4, 6

_libc = ctypes.CDLL(None, use_errno=True)


class Access(Enum):
    """What a rule grants beneath its path."""

    LIST = "list"  # list the folder's names only (Python's import system lists site-packages)
    READ = "read"  # read files and list folders; execute (the loader maps libraries)
    READ_WRITE = "read-write"  # everything: the private scratch folder
    DEVICE = "device"  # read, write and ioctl on device files (/dev/null, GPU nodes)


@dataclass(frozen=True)
class Rule:
    path: Path
    access: Access


@dataclass(frozen=True)
class Restricted:
    """What `restrict()` applied, for the ready report."""

    abi: int
    tcp_denied: bool
    scoped: bool


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """The kernel's Landlock ABI; 0 when it has none (or a seccomp profile hides it)."""
    version = _libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(version), 0)


def handled_fs(abi: int) -> int:
    return sum(bits for version, bits in _FS_BY_ABI.items() if abi >= version)


def restrict(rules: Sequence[Rule], abi: int, *, scope: bool = True) -> Restricted:
    """Apply the rules to this process for good. Raises OSError if the kernel refuses any step."""
    if abi < 1:
        raise OSError(38, "this kernel has no Landlock")
    fs = handled_fs(abi)
    net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= NET_ABI else 0
    scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if scope and abi >= SCOPE_ABI else 0
    attr = _RulesetAttr(fs, net, scoped)
    # older kernels reject fields they do not know, so pass only the prefix this ABI has
    size = ctypes.sizeof(ctypes.c_uint64) * (3 if abi >= SCOPE_ABI else 2 if abi >= NET_ABI else 1)
    ruleset = _libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    _check(ruleset, "landlock_create_ruleset")
    try:
        for rule in rules:
            _allow(ruleset, rule, fs)
        _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        _check(_libc.syscall(_SYS_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return Restricted(abi=abi, tcp_denied=bool(net), scoped=bool(scoped))


def _rights(access: Access, handled: int) -> int:
    if access is Access.LIST:
        return _READ_DIR
    if access is Access.READ:
        return _EXECUTE | _READ_FILE | _READ_DIR
    if access is Access.DEVICE:
        return (_READ_FILE | _WRITE_FILE | _IOCTL_DEV | _TRUNCATE) & handled
    return handled


def _allow(ruleset: int, rule: Rule, handled: int) -> None:
    fd = os.open(rule.path, os.O_PATH | os.O_CLOEXEC)
    try:
        rights = _rights(rule.access, handled)
        if not stat.S_ISDIR(os.fstat(fd).st_mode):  # a file (not a folder) may carry file rights only
            rights &= _FILE_ONLY_RIGHTS
        attr = _PathBeneathAttr(rights, fd)
        result = _libc.syscall(
            _SYS_ADD_RULE, ruleset, ctypes.c_uint32(_RULE_PATH_BENEATH), ctypes.byref(attr), ctypes.c_uint32(0)
        )
        _check(result, f"landlock_add_rule({rule.path})")
    finally:
        os.close(fd)


def _check(result: int, what: str) -> None:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what} failed: {os.strerror(errno)}")
