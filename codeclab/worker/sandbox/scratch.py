"""The child's scratch folder, capped in size, and the private namespaces that come with it.

Where the kernel lets the child make its own mount namespace (root with CAP_SYS_ADMIN, as on
a development machine), it also takes fresh IPC and network namespaces, turns every mount
read-only and noatime, and mounts a tmpfs of a fixed size over its scratch folder: the cap
holds however many files it writes, and the folder vanishes with the child. Where it cannot
(a Docker container's default profile), the scratch folder must already sit on a tmpfs no
larger than the cap: the Batch job definition mounts one. Anything else has no disk cap,
and untrusted code does not run on it.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWNET = 0x00020000, 0x08000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_NOATIME, _MS_BIND = 1, 2, 4, 8, 32, 1024, 4096
_MS_REC, _MS_PRIVATE = 1 << 14, 1 << 18
_ST_NOSUID, _ST_NODEV, _ST_NOEXEC = 2, 4, 8

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Scratch:
    """How the scratch folder is capped."""

    how: str  # "private tmpfs" or "host tmpfs"
    size_bytes: int


def private_mounts() -> bool:
    """A mount namespace of this process's own, detached from the host's; False where the kernel refuses."""
    if _libc.unshare(_CLONE_NEWNS) != 0:
        return False
    # mounts made from now on stay in this namespace
    _check(_libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "mount(/, MS_PRIVATE)")
    return True


def private_ipc_and_network() -> bool:
    """Fresh IPC and network namespaces: no System V object, queue or interface of the host's."""
    return _libc.unshare(_CLONE_NEWIPC | _CLONE_NEWNET) == 0


def freeze_mounts() -> tuple[int, int]:
    """Make every mount of this (private) namespace read-only and noatime; returns (frozen, total).

    Read-only is depth under Landlock. Noatime closes a channel Landlock leaves: reading a file the
    child may read would update its access time, which the next child could see with stat().
    """
    points = list(dict.fromkeys(line.split()[4].encode().decode("unicode_escape") for line in _mountinfo()))
    frozen = 0
    for point in points:
        try:
            kept = os.statvfs(point).f_flag & (_ST_NOSUID | _ST_NODEV | _ST_NOEXEC)
        except OSError:
            continue
        flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOATIME | kept  # ST_ and MS_ bits agree for these
        frozen += _libc.mount(None, os.fsencode(point), None, flags, None) == 0
    return frozen, len(points)


def mount_private_tmpfs(folder: Path, size_bytes: int, uid: int) -> Scratch:
    """A tmpfs of `size_bytes` over `folder`, owned by `uid`, the child's file-system uid (needs a private mount
    namespace)."""
    options = f"size={size_bytes},nr_inodes=4096,mode=0700,uid={uid},gid={uid}".encode()
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _check(_libc.mount(b"tmpfs", os.fsencode(folder), b"tmpfs", flags, options), f"mount tmpfs on {folder}")
    return Scratch("private tmpfs", size_bytes)


def host_tmpfs(folder: Path, size_bytes: int) -> Scratch | None:
    """The tmpfs `folder` already sits on, if it is one and no larger than `size_bytes`."""
    mount_point, fs_type = _mount_of(folder.resolve())
    if fs_type != "tmpfs":
        return None
    info = os.statvfs(mount_point)
    total = info.f_blocks * info.f_frsize
    return Scratch("host tmpfs", total) if total <= size_bytes else None


def _mountinfo() -> list[str]:
    return Path("/proc/self/mountinfo").read_text().splitlines()


def _mount_of(path: Path) -> tuple[str, str]:
    """The mount point holding `path` and its file-system type (the longest matching mount point)."""
    best, fs_type = "/", ""
    for line in _mountinfo():
        fields = line.split()
        point = fields[4].encode().decode("unicode_escape")  # mountinfo escapes spaces as \040
        kind = fields[fields.index("-") + 1]
        if (path == Path(point) or Path(point) in path.parents) and len(point) >= len(best):
            best, fs_type = point, kind
    return best, fs_type


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what} failed: {os.strerror(errno)}")
