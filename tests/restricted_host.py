"""Run a command on this machine made to look like a host without some sandbox layer, with real kernel means.

`python -m tests.restricted_host [--hide-landlock] [--no-setuid] [--no-unshare]
[--tmpfs DIR:BYTES]... [--file-size BYTES] -- COMMAND...`

- `--hide-landlock`: landlock_create_ruleset answers ENOSYS, as under a Docker seccomp profile older than 20.10.18
  or on a kernel without Landlock;
- `--no-setuid`: CAP_SETUID leaves the bounding set, so even root cannot hand a child another uid;
- `--no-unshare`: unshare and mount answer EPERM, as under Docker's default profile without CAP_SYS_ADMIN;
- `--tmpfs DIR:BYTES`: DIR becomes a tmpfs of BYTES in a mount namespace of the command's own, as the Batch job
  definition's tmpfs is in the container (a small one is a disk that fills up; repeat it for several);
- `--file-size BYTES`: RLIMIT_FSIZE, as `ulimit -f` sets it.
The seccomp filter and the bounding set are inherited by COMMAND and everything it starts.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import resource
import sys
from pathlib import Path

import pyseccomp as seccomp

_PR_CAPBSET_DROP, _CAP_SETUID = 24, 7
_CLONE_NEWNS, _MS_REC, _MS_PRIVATE = 0x00020000, 1 << 14, 1 << 18


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hide-landlock", action="store_true")
    parser.add_argument("--no-setuid", action="store_true")
    parser.add_argument("--no-unshare", action="store_true")
    parser.add_argument("--tmpfs", action="append", default=[])
    parser.add_argument("--file-size", type=int)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    libc = ctypes.CDLL(None, use_errno=True)
    if args.tmpfs:
        assert libc.unshare(_CLONE_NEWNS) == 0 and libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None) == 0
    for mount in args.tmpfs:
        folder, size = mount.rsplit(":", 1)
        Path(folder).mkdir(parents=True, exist_ok=True)
        assert libc.mount(b"tmpfs", folder.encode(), b"tmpfs", 0, f"size={size},mode=1777".encode()) == 0
    if args.file_size is not None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.file_size, args.file_size))
    if args.no_setuid:
        assert libc.prctl(_PR_CAPBSET_DROP, _CAP_SETUID, 0, 0, 0) == 0
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    if args.hide_landlock:
        rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "landlock_create_ruleset")
    if args.no_unshare:
        for name in ("unshare", "mount"):
            rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
    rules.load()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main())
