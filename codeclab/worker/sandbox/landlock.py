"""Landlock (Linux 5.13+): an unprivileged filesystem allow-list for the sandboxed child.

After `restrict()`, the process may read only the Python installation and system libraries,
and read and write only its private folder. Other paths (the worker's staging folder with
the reference, /etc, /home, /tmp) fail with PermissionError. Works without root.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
# ABI 1 access rights: execute, write, read file, read dir, remove dir/file, make char/dir/reg/sock/fifo/block/sym
_READ = (1 << 0) | (1 << 2) | (1 << 3)  # execute (for the loader's mmap of libraries), read file, read dir
_ALL_V1 = (1 << 13) - 1
_EXTRA_BY_ABI = {2: 1 << 13, 3: 1 << 14}  # refer, truncate: handled too when the kernel knows them

_libc = ctypes.CDLL(None, use_errno=True)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """0 when the kernel has no Landlock."""
    version = _libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(version), 0)


def read_only_roots() -> list[Path]:
    """Where this Python and its libraries live, plus the system's shared libraries, /sys and /dev."""
    roots = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), Path(sys.base_exec_prefix)}
    roots |= {Path(p) for p in sys.path if p and Path(p).is_dir()}
    # not /proc: /proc/<parent>/environ would hand over the worker's credentials
    roots |= {Path(p) for p in ("/usr", "/lib", "/lib64", "/sys", "/dev") if Path(p).exists()}
    return sorted(roots)


def restrict(writable: Path) -> int:
    """Apply the allow-list to this process for good; returns the Landlock ABI used (0: unavailable)."""
    abi = abi_version()
    if abi == 0:
        return 0
    handled = _ALL_V1 | sum(bit for version, bit in _EXTRA_BY_ABI.items() if abi >= version)
    attr = _RulesetAttr(handled)
    ruleset = _libc.syscall(
        _SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0)
    )
    _check(ruleset, "landlock_create_ruleset")
    try:
        for root in read_only_roots():
            _allow(ruleset, root, _READ)
        _allow(ruleset, writable, handled)
        _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        _check(_libc.syscall(_SYS_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


def _allow(ruleset: int, path: Path, access: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        # a file (not a folder) may carry file rights only
        rights = access if path.is_dir() else access & ((1 << 0) | (1 << 1) | (1 << 2) | (1 << 14))
        rule = _PathBeneathAttr(rights, fd)
        _check(
            _libc.syscall(
                _SYS_ADD_RULE, ruleset, ctypes.c_uint32(_RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_uint32(0)
            ),
            f"landlock_add_rule({path})",
        )
    finally:
        os.close(fd)


def _check(result: int, what: str) -> None:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what} failed: {os.strerror(errno)}")
