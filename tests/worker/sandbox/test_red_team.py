"""The red-team corpus: every class of escape found against the sandbox, each with a control.

Each attack is written as an automated search would write it: it passes the AST check (it
reaches ctypes through numpy.ctypeslib and os through typing.sys), so it tests the layers
beneath. Each runs twice: with the full sandbox, where it must achieve nothing, and with the
layers that close its class taken out, where it must do the harm it aims at. A control that
does no harm would mean a broken attack, and a "contained" that proves nothing.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from codeclab.worker.errors import SandboxUnavailable, SandboxViolation, WorkerError
from codeclab.worker.sandbox import landlock, readable
from codeclab.worker.sandbox.layers import Layer, SandboxPolicy
from codeclab.worker.sandbox.seccomp_filter import Family
from codeclab.worker.sandbox.static_check import allowed_imports, check_source
from codeclab.worker.sources import builtin_clip_path
from tests.conftest import REPO
from tests.worker.sandbox.support import FULL, SECRET, TIGHT, codec, raw_frames, run, transmit

pytestmark = pytest.mark.slow  # real child processes per case: `make test` runs them, `make test-fast` does not


SIZE = len(raw_frames())
# What an automated search writes to get past the AST check: every name here is allowed.
PRELUDE = """import numpy as np, typing, struct
ctypes = np.ctypeslib.ctypes
os = typing.sys.modules['os']
libc = ctypes.CDLL(None, use_errno=True)
def fail(what):
    raise OSError(ctypes.get_errno(), f'{what}: ' + os.strerror(ctypes.get_errno()))
def data(frames):
    return b''.join(frames[p].tobytes() for p in 'yuv')
def planes(raw, header):
    n, h, w = header['frames'], header['height'], header['width']
    raw = np.frombuffer(raw.ljust(n * h * w * 3 // 2, b'\\0'), np.uint8)
    return {'y': raw[:n*h*w].reshape(n, h, w), 'u': raw[n*h*w:n*h*w*5//4].reshape(n, h//2, w//2),
            'v': raw[n*h*w*5//4:].reshape(n, h//2, w//2)}
"""


def attack(encode_body: str, decode_body: str = "return planes(b'', header)", **values: object) -> str:
    source = codec(encode_body, decode_body, PRELUDE)
    for name, value in values.items():
        source = source.replace(name, repr(value) if not isinstance(value, int) else str(value))
    check_source(source, allowed_imports())  # the AST check lets it through: the layers below are on trial
    return source


# --- 1. Kernel objects that outlive a process carry data from encoder to decoder -------------------------

IPC_CLASS = (Family.IPC, Layer.NAMESPACES)
_libc = ctypes.CDLL(None, use_errno=True)


@pytest.fixture
def key() -> Iterator[int]:
    """A System V key and POSIX name for one test; whatever a control left behind is removed."""
    value = secrets.randbelow(1 << 30) + 1
    yield value
    for get, remove in ((_libc.shmget, _libc.shmctl), (_libc.msgget, _libc.msgctl)):
        ident = get(value, 0, 0)
        if ident >= 0:
            remove(ident, 0, None)
    ident = _libc.semget(value, 0, 0)
    if ident >= 0:
        _libc.semctl(ident, 0, 0)
    _libc.mq_unlink(f"/codeclab-{value}".encode())


SYSV_SHM = (
    "ident = libc.shmget(KEY, SIZE, 0o1666)\nif ident < 0: fail('shmget')\nlibc.shmat.restype = ctypes.c_void_p\n"
    "ctypes.memmove(libc.shmat(ident, None, 0), data(frames), SIZE)\nreturn b'x'",
    "ident = libc.shmget(KEY, SIZE, 0)\nif ident < 0: fail('shmget')\nlibc.shmat.restype = ctypes.c_void_p\n"
    "return planes(ctypes.string_at(libc.shmat(ident, None, 0), SIZE), header)",
)
SYSV_MESSAGE = (
    "ident = libc.msgget(KEY, 0o1666)\nif ident < 0: fail('msgget')\nmessage = struct.pack('q', 1) + data(frames)\n"
    "if libc.msgsnd(ident, message, SIZE, 0) < 0: fail('msgsnd')\nreturn b'x'",
    "ident = libc.msgget(KEY, 0)\nif ident < 0: fail('msgget')\nbuffer = ctypes.create_string_buffer(8 + SIZE)\n"
    "if libc.msgrcv(ident, buffer, SIZE, 0, 0o4000) < 0: fail('msgrcv')\nreturn planes(buffer.raw[8:], header)",
)
SYSV_SEMAPHORES = (
    "ident = libc.semget(KEY, SIZE, 0o1666)\nif ident < 0: fail('semget')\n"
    "values = (ctypes.c_ushort * SIZE)(*data(frames))\nif libc.semctl(ident, 0, 17, values) < 0: fail('semctl')\n"
    "return b'x'",
    "ident = libc.semget(KEY, 0, 0)\nif ident < 0: fail('semget')\nvalues = (ctypes.c_ushort * SIZE)()\n"
    "if libc.semctl(ident, 0, 13, values) < 0: fail('semctl')\nreturn planes(bytes(list(values)), header)",
)
POSIX_QUEUE = (
    "attr = (ctypes.c_long * 8)(0, 1, SIZE, 0)\nq = libc.mq_open(NAME, 0o102, 0o666, attr)\nif q < 0: fail('mq_open')\n"
    "if libc.mq_send(q, data(frames), SIZE, 0) < 0: fail('mq_send')\nreturn b'x'",
    "q = libc.mq_open(NAME, 0)\nif q < 0: fail('mq_open')\nbuffer = ctypes.create_string_buffer(SIZE)\n"
    "if libc.mq_receive(q, buffer, SIZE, None) < 0: fail('mq_receive')\nreturn planes(buffer.raw, header)",
)
# name: (encode, decode, the layers that close it)
KERNEL_OBJECTS = {
    "System V shared memory": (*SYSV_SHM, IPC_CLASS),
    "System V message queue": (*SYSV_MESSAGE, IPC_CLASS),
    "System V semaphores": (*SYSV_SEMAPHORES, IPC_CLASS),
    # POSIX queues are files of the kernel's mqueue file system: Landlock refuses to open them too
    "POSIX message queue": (*POSIX_QUEUE, (*IPC_CLASS, Layer.LANDLOCK)),
}


def kernel_object_attack(name: str, key: int) -> str:
    encode, decode, _ = KERNEL_OBJECTS[name]
    return attack(encode, decode, KEY=key, SIZE=SIZE, NAME=f"/codeclab-{key}".encode())


@pytest.mark.parametrize("name", list(KERNEL_OBJECTS))
def test_kernel_objects_carry_nothing_from_encoder_to_decoder(name: str, key: int) -> None:
    sent = transmit(kernel_object_attack(name, key))
    assert not sent.leaked()
    assert isinstance(sent.error, SandboxViolation) and "Operation not permitted" in str(sent.error)


@pytest.mark.parametrize("name", list(KERNEL_OBJECTS))
def test_control_kernel_objects_carry_the_frames_without_the_ipc_layers(name: str, key: int) -> None:
    sent = transmit(kernel_object_attack(name, key), policy=FULL.without(*KERNEL_OBJECTS[name][2]))
    assert sent.leaked() and sent.bitstream == b"x", sent.error  # the whole clip for one byte


@pytest.mark.parametrize("alone", [Family.IPC, Layer.NAMESPACES], ids=["seccomp alone", "IPC namespace alone"])
def test_each_ipc_layer_alone_closes_the_channel(alone: Family | Layer, key: int) -> None:
    other = next(part for part in IPC_CLASS if part != alone)
    assert not transmit(kernel_object_attack("System V shared memory", key), policy=FULL.without(other)).leaked()


# --- 2. File metadata outside the private folder --------------------------------------------------------

# seccomp's metadata family, and the read-only mounts of the child's own mount namespace
METADATA_CLASS = (Family.METADATA, Layer.NAMESPACES)

METADATA = {
    # name: (encode, decode, bytes carried, the layers that close it)
    "extended attributes": (
        "os.setxattr(SHARED, 'user.codeclab', data(frames))\nreturn b'x'",
        "return planes(os.getxattr(SHARED, 'user.codeclab'), header)",
        SIZE, METADATA_CLASS,
    ),
    "access and modification times": (
        "d = data(frames)\nos.utime(SHARED, (int.from_bytes(d[:4], 'big'), int.from_bytes(d[4:8], 'big')))\n"
        "return b'x'",
        "s = os.stat(SHARED)\nreturn planes(int(s.st_atime).to_bytes(4, 'big') + int(s.st_mtime).to_bytes(4, 'big'), "
        "header)",
        8, METADATA_CLASS,
    ),
    "permission bits": (
        "os.chmod(SHARED, 0o400 | data(frames)[0])\nreturn b'x'",
        "return planes(bytes([os.stat(SHARED).st_mode & 0xFF]), header)",
        1, METADATA_CLASS,
    ),
    "owner": (
        "os.chown(SHARED, int.from_bytes(data(frames)[:3], 'big'), -1)\nreturn b'x'",
        "return planes(os.stat(SHARED).st_uid.to_bytes(3, 'big'), header)",
        3, (*METADATA_CLASS, Layer.IDENTITY),
    ),
}  # fmt: skip


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A root-owned file both children may read, as they may read the Python installation."""
    path = tmp_path / "shared.bin"
    path.write_bytes(b"public")
    return path


def metadata_attack(name: str, shared: Path) -> str:
    encode, decode, _, _ = METADATA[name]
    return attack(encode, decode, SHARED=str(shared))


@pytest.mark.parametrize("name", list(METADATA))
def test_file_metadata_carries_nothing(name: str, shared: Path) -> None:
    _, _, carried, _ = METADATA[name]
    sent = transmit(metadata_attack(name, shared), readable=[shared])
    assert not sent.leaked(carried)
    assert isinstance(sent.error, SandboxViolation), sent.error


@pytest.mark.parametrize("name", list(METADATA))
def test_control_file_metadata_carries_data_without_the_layer(name: str, shared: Path) -> None:
    _, _, carried, layers = METADATA[name]
    sent = transmit(metadata_attack(name, shared), policy=FULL.without(*layers), readable=[shared])
    assert sent.leaked(carried), sent.error


@pytest.mark.parametrize("alone", METADATA_CLASS, ids=["seccomp alone", "read-only mounts alone"])
def test_each_metadata_layer_alone_closes_the_channel(alone: Family | Layer, shared: Path) -> None:
    other = next(part for part in METADATA_CLASS if part != alone)
    assert not transmit(metadata_attack("extended attributes", shared), policy=FULL.without(other),
                        readable=[shared]).leaked()  # fmt: skip


INODE_FLAGS = (0x8, 0x40, 0x80)  # FS_SYNC_FL, FS_NODUMP_FL, FS_NOATIME_FL: an owner may set them
FLAGS_ATTACK = (
    "fd = os.open(SHARED, os.O_RDONLY)\nflags = ctypes.c_long(0)\nlibc.ioctl(fd, 0x80086601, ctypes.byref(flags))\n"
    "bits = data(frames)[0]\nfor i, flag in enumerate(INODE_BITS):\n    flags.value = flags.value | flag if bits >> i & 1 "
    "else flags.value & ~flag\nif libc.ioctl(fd, 0x40086602, ctypes.byref(flags)) < 0: fail('FS_IOC_SETFLAGS')\n"
    "return b'x'",
    "fd = os.open(SHARED, os.O_RDONLY)\nflags = ctypes.c_long(0)\nlibc.ioctl(fd, 0x80086601, ctypes.byref(flags))\n"
    "return planes(bytes([sum(1 << i for i, f in enumerate(INODE_BITS) if flags.value & f)]), header)",
)


def inode_flags_supported(path: Path) -> bool:
    flags = ctypes.c_long(0)
    fd = os.open(path, os.O_RDONLY)
    try:
        return _libc.ioctl(fd, 0x80086601, ctypes.byref(flags)) == 0
    finally:
        os.close(fd)


def test_inode_flags_carry_nothing(shared: Path) -> None:
    sent = transmit(attack(*FLAGS_ATTACK, SHARED=str(shared), INODE_BITS=INODE_FLAGS), readable=[shared])
    assert sent.decoded is None or sent.decoded[1] & 0b111 != raw_frames()[0] & 0b111
    assert isinstance(sent.error, SandboxViolation) and "FS_IOC_SETFLAGS" in str(sent.error)


def test_control_inode_flags_carry_three_bits_without_the_metadata_layers(shared: Path) -> None:
    if not inode_flags_supported(shared):
        pytest.skip(f"the file system under {shared} keeps no inode flags")
    source = attack(*FLAGS_ATTACK, SHARED=str(shared), INODE_BITS=INODE_FLAGS)
    sent = transmit(source, policy=FULL.without(*METADATA_CLASS), readable=[shared])
    assert sent.decoded is not None and sent.decoded[1] & 0b111 == raw_frames()[0] & 0b111 == 0b101, sent.error


ATIME = attack(
    "import io\nfor i in range(8):\n    if data(frames)[0] >> i & 1:\n        io.FileIO(f'LIBRARY/{i}').read(1)\n"
    "return b'x'",
    "import time\nrecent = [os.stat(f'LIBRARY/{i}').st_atime > time.time() - 3600 for i in range(8)]\n"
    "return planes(bytes([sum(1 << i for i, r in enumerate(recent) if r)]), header)",
)


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """Files the children may read, last read three days ago, as most of an installed package is."""
    folder = tmp_path / "library"
    folder.mkdir()
    for i in range(8):
        (folder / str(i)).write_bytes(b"module")
        os.utime(folder / str(i), (time.time() - 3 * 86400,) * 2)
    return folder


def test_reading_files_leaves_no_access_times_to_read(library: Path) -> None:
    sent = transmit(ATIME.replace("LIBRARY", str(library)), readable=[library])
    assert sent.error is None and not sent.leaked(1)


def test_control_access_times_carry_a_byte_without_the_noatime_namespace(library: Path) -> None:
    sent = transmit(ATIME.replace("LIBRARY", str(library)), policy=FULL.without(Layer.NAMESPACES), readable=[library])
    assert sent.leaked(1), sent.error


# --- 3. The decoder reads a copy of the source -----------------------------------------------------------

READ_FILE = attack("return b'x'", "import io\nreturn planes(io.FileIO(SOURCE).read(SIZE), header)")
SITE_PACKAGES = next(Path(p) for p in sys.path if p.endswith("site-packages"))


def source_attack(path: Path) -> str:
    return READ_FILE.replace("SOURCE", repr(str(path))).replace("SIZE", str(SIZE))


def read_back(path: Path, policy: SandboxPolicy = FULL, **extra: object) -> bytes | WorkerError:
    try:
        return run("decode", source_attack(path), policy=policy, payload=b"x", **extra).output[1 : 1 + SIZE]
    except WorkerError as exc:
        return exc


@pytest.fixture
def local_clip(tmp_path: Path) -> Path:
    path = tmp_path / "clips" / "mine.y4m"
    path.parent.mkdir()
    path.write_bytes(raw_frames())
    return path


def test_the_decoder_cannot_read_the_builtin_clip_inside_an_installed_package() -> None:
    clip = builtin_clip_path("carphone")
    outcome = read_back(clip, hidden=[clip])
    assert isinstance(outcome, SandboxViolation) and "Permission denied" in str(outcome)


def test_control_the_decoder_reads_the_builtin_clip_without_landlock() -> None:
    clip = builtin_clip_path("carphone")
    assert read_back(clip, FULL.without(Layer.LANDLOCK)) == clip.read_bytes()[:SIZE]


def test_control_readable_site_packages_as_before_hand_over_the_builtin_clip() -> None:
    """The old rule (every sys.path folder readable) is what let cv2.VideoCapture open the clip."""
    clip = builtin_clip_path("carphone")
    assert read_back(clip, readable=[SITE_PACKAGES]) == clip.read_bytes()[:SIZE]


def test_a_copy_of_the_source_inside_a_readable_folder_fails_closed() -> None:
    clip = builtin_clip_path("carphone")
    outcome = read_back(clip, readable=[SITE_PACKAGES], hidden=[clip])
    assert isinstance(outcome, SandboxUnavailable) and f"could still read {clip}" in str(outcome)


def test_the_decoder_cannot_read_a_local_clip_or_the_worker_folders(local_clip: Path) -> None:
    for path in (local_clip, local_clip.parent):
        outcome = read_back(local_clip, hidden=[path])
        assert isinstance(outcome, SandboxViolation) and "Permission denied" in str(outcome)


def test_control_the_decoder_reads_a_local_clip_without_landlock(local_clip: Path) -> None:
    assert read_back(local_clip, FULL.without(Layer.LANDLOCK)) == raw_frames()


def test_the_readable_set_is_the_interpreter_and_the_allowed_packages_only() -> None:
    paths = [rule.path for rule in readable.rules(["numpy", "torch", "cv2"])]
    assert SITE_PACKAGES / "numpy" in paths and SITE_PACKAGES / "torch" in paths and SITE_PACKAGES / "cv2" in paths
    assert not any(p.name in {"skvideo", "codeclab", "av", "boto3"} or "skvideo" in str(p) for p in paths)
    assert not any(p == Path("/usr") or p == Path("/proc") or p == Path("/tmp") or p == REPO for p in paths)


@pytest.fixture
def shm_name() -> Iterator[Path]:
    path = Path(f"/dev/shm/codeclab-{secrets.token_hex(4)}")
    yield path
    path.unlink(missing_ok=True)


def shm_attack(path: Path) -> str:
    return attack(
        "import io\nio.FileIO(PATH, 'w').write(data(frames))\nreturn b'x'",
        "import io\nreturn planes(io.FileIO(PATH).read(), header)",
        PATH=str(path),
    )


def test_dev_shm_carries_nothing(shm_name: Path) -> None:
    sent = transmit(shm_attack(shm_name))
    assert not sent.leaked() and isinstance(sent.error, SandboxViolation)


def test_control_dev_shm_carries_the_frames_without_landlock_and_read_only_mounts(shm_name: Path) -> None:
    assert transmit(shm_attack(shm_name), policy=FULL.without(Layer.LANDLOCK, Layer.NAMESPACES)).leaked()


# --- 4. Nothing the child writes is trusted ---------------------------------------------------------------

LINK_ATTACK = attack("os.symlink(f'/proc/{os.getppid()}/environ', 'bitstream.bin')\nreturn b'x'")


def test_an_output_linked_to_the_workers_environment_is_never_read() -> None:
    """The worker's credentials are in its environment from the start, as on Batch: /proc/PID/environ has them."""
    report = attack_the_worker(LINK_ATTACK, env={"AWS_SECRET_ACCESS_KEY": SECRET})
    assert isinstance(report, dict) and report["outcome"] == "SUCCEEDED" and report["output"] == b"x".hex()
    assert SECRET not in json.dumps(report)


def test_control_a_worker_that_reads_the_childs_file_gets_the_secret(tmp_path: Path) -> None:
    """As the worker read bitstream.bin before: the same code unsandboxed, under a parent holding the secret."""
    attack_run = f"{LINK_ATTACK}\nencode({{}}, {{}})\n"
    parent = (
        f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {attack_run!r}], check=True)\n"
        "sys.stdout.buffer.write(open('bitstream.bin', 'rb').read())"
    )
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": SECRET}
    read = subprocess.run([sys.executable, "-c", parent], cwd=tmp_path, env=env, capture_output=True, check=True)
    assert SECRET.encode() in read.stdout


FORGE = attack(
    'body = b\'{"applied": {"landlock": {"abi": 99}}, "missing": {}}\'\n'
    "for fd in range(3, 64):\n    try:\n        os.write(fd, struct.pack('>cQ', b'R', len(body)) + body)\n"
    "    except OSError:\n        pass\nreturn b'x'"
)


def test_a_forged_layer_report_is_refused() -> None:
    with pytest.raises(SandboxViolation, match="more than one answer"):
        run("encode", FORGE)


def test_control_the_layer_report_is_checked_in_proc_not_believed() -> None:
    """A READY that claims every layer, checked against a process that has none (this test's own)."""
    from codeclab.worker.sandbox.protocol import ChildRequest, PublicHeader
    from codeclab.worker.sandbox.verify import verify

    claims = {"seccomp": ["ipc"], "identity": {}, "pids": 64, "namespaces": [], "scratch": {"how": "private tmpfs"}}
    request = ChildRequest(
        role="encode", code="", params={}, header=PublicHeader(16, 16, 2, "25"), payload_bytes=0, allowed_imports=[],
        preload=[], required=sorted(Layer), optional=[], seccomp=["ipc"], uid=1 << 30, file_uid=0, cpu_seconds=3,
        file_bytes=1, address_space_bytes=None, scratch="/nowhere", scratch_bytes=1, max_threads=64, readable=[],
        hidden=[], result_fd=3,
    )  # fmt: skip
    applied = verify(os.getpid(), request, {"applied": claims, "missing": {}}, trusted=False)
    assert not {"seccomp", "identity", "pids", "namespaces", "scratch", "rlimits"} & set(applied.layers)


OVERSIZE = attack(
    "return b'x'",
    "for fd in range(3, 64):\n    try:\n        os.write(fd, struct.pack('>cQ', b'O', 1 << 30))\n    except OSError:\n"
    "        pass\nimport time\ntime.sleep(5)\nreturn planes(b'', header)",
)


def test_an_announced_gigabyte_is_refused_before_a_byte_is_read() -> None:
    with pytest.raises(SandboxViolation, match=r"announced 1073741824 bytes of its output, over the cap"):
        run("decode", OVERSIZE, payload=b"x")


def test_control_an_archive_inflated_before_its_shape_is_checked_costs_the_worker_its_declared_size(
    tmp_path: Path,
) -> None:
    """What the worker did with the decoder's .npz: np.load inflates a 0.5 MB file that declares 512 MiB."""
    bomb = tmp_path / "decoded.npz"
    np.savez_compressed(bomb, y=np.zeros(1 << 29, np.uint8))
    assert bomb.stat().st_size < 2 << 20
    script = (
        "import numpy as np, resource, sys\nwith np.load(sys.argv[1]) as f:\n    f['y']\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)"
    )
    peak_mb = int(subprocess.run([sys.executable, "-c", script, bomb], capture_output=True, check=True).stdout)
    assert peak_mb > 512


# --- 5. The child reaches the worker ----------------------------------------------------------------------

TARGETS = (Family.TARGETS, Layer.IDENTITY, Layer.SIGNAL_SCOPE)
ATTACKS_ON_THE_WORKER = {
    "kill": "libc.kill(os.getppid(), 9)",
    "tkill": "libc.syscall(200, os.getppid(), 9)",
    # si_code SI_QUEUE (-1): the kernel refuses to forge a kernel-sent siginfo for another process
    "rt_sigqueueinfo": "info = ctypes.create_string_buffer(128)\nstruct.pack_into('iii', info, 0, 9, 0, -1)\n"
    "libc.syscall(129, os.getppid(), 9, info)",
    "pidfd_send_signal": "fd = libc.syscall(434, os.getppid(), 0)\nlibc.syscall(424, fd, 9, None, 0)",
    "prlimit on its CPU time": "limit = (ctypes.c_ulong * 2)(1, 1)\nlibc.prlimit(os.getppid(), 0, limit, None)",
    "setpriority": "libc.setpriority(0, os.getppid(), 19)",
    "sched_setaffinity": "mask = ctypes.c_ulong(1)\nlibc.sched_setaffinity(os.getppid(), 8, ctypes.byref(mask))",
}


def attack_the_worker(
    source: str, *layers_off: Layer | Family, env: dict[str, str] | None = None
) -> dict[str, object] | int:
    """Run an encoder under a stand-in worker process; its report, or its exit status if it died."""
    proc = subprocess.run([sys.executable, "-m", "tests.worker.sandbox.victim", *layers_off], input=source,
                          capture_output=True, text=True, cwd=REPO, timeout=60, env={**os.environ, **(env or {})})  # fmt: skip
    return json.loads(proc.stdout) if proc.returncode == 0 else proc.returncode


def worker_attack(name: str) -> str:
    return attack(f"{ATTACKS_ON_THE_WORKER[name]}\nreturn b'x'")


@pytest.mark.parametrize("name", list(ATTACKS_ON_THE_WORKER))
def test_the_child_cannot_kill_or_reconfigure_the_worker(name: str) -> None:
    report = attack_the_worker(worker_attack(name))
    assert isinstance(report, dict) and report["changed"] is False, report


@pytest.mark.parametrize("name", list(ATTACKS_ON_THE_WORKER))
def test_control_the_child_kills_or_reconfigures_the_worker_without_the_layers(name: str) -> None:
    report = attack_the_worker(worker_attack(name), *TARGETS)
    assert report in (-9, -24) or (isinstance(report, dict) and report["changed"] is True), report


@pytest.mark.parametrize("alone", TARGETS, ids=lambda part: f"{part} alone")
def test_each_layer_alone_keeps_a_kill_from_the_worker(alone: Layer | Family) -> None:
    if alone is Layer.SIGNAL_SCOPE and landlock.abi_version() < landlock.SCOPE_ABI:
        pytest.skip("this kernel's Landlock has no signal scoping (ABI 6, Linux 6.12+)")
    report = attack_the_worker(worker_attack("kill"), *(part for part in TARGETS if part != alone))
    assert isinstance(report, dict) and report["changed"] is False, report


# --- 6. Resource limits hold -------------------------------------------------------------------------------

DISK_FILL = attack(
    "import io\ntotal = 0\nfor name in 'abcd':\n    try:\n        with io.FileIO(name, 'w') as f:\n"
    "            for _ in range(20):\n                total += f.write(bytes(1 << 20))\n"
    "    except OSError:\n        break\nreturn total.to_bytes(8, 'big')",
)
DISK = replace(TIGHT, file_bytes=24 << 20, scratch_bytes=32 << 20, wall_seconds=30)


def test_several_files_under_the_per_file_limit_cannot_fill_the_disk() -> None:
    try:
        written = int.from_bytes(run("encode", DISK_FILL, limits=DISK).output, "big")
    except SandboxViolation as exc:  # the file-size signal, if a file reached its limit first
        assert "larger than its limit" in str(exc)
        return
    assert written <= DISK.scratch_bytes


def test_control_without_the_scratch_cap_the_files_add_up_past_it() -> None:
    # without its tmpfs the folder is the host's disk (read-only in the child's namespace, so that goes too)
    policy = FULL.without(Layer.SCRATCH, Layer.NAMESPACES)
    written = int.from_bytes(run("encode", DISK_FILL, policy=policy, limits=DISK).output, "big")
    assert written == 4 * 20 << 20 > DISK.scratch_bytes


THREAD_BOMB = attack(
    "threading = typing.sys.modules['importlib'].import_module('threading')\nthreading.stack_size(1 << 16)\nstop, started = threading.Event(), 0\nwhile started < 300:\n"
    "    try:\n        threading.Thread(target=stop.wait, daemon=True).start()\n    except RuntimeError:\n"
    "        break\n    started += 1\nstop.set()\nreturn started.to_bytes(4, 'big')"
)


def test_threads_stop_at_the_cap_whatever_the_uid() -> None:
    started = int.from_bytes(run("encode", THREAD_BOMB).output, "big")
    assert started < TIGHT.max_threads


def test_control_without_the_pids_layer_threads_go_past_the_cap() -> None:
    assert int.from_bytes(run("encode", THREAD_BOMB, policy=FULL.without(Layer.PIDS)).output, "big") == 300


# --- 7. The runtime import guard ---------------------------------------------------------------------------

TYPE_HINTS = codec(
    "def f(x: \"__import__('os')\"): pass\nreturn typing.get_type_hints(f, globalns={})['x'].__name__.encode()",
    prelude="import typing",
)


def test_an_import_evaluated_through_typing_is_refused() -> None:
    check_source(TYPE_HINTS, allowed_imports())
    with pytest.raises(SandboxViolation, match="import of 'os' is not allowed"):
        run("encode", TYPE_HINTS)


def test_control_unguarded_the_annotation_imports_os() -> None:
    script = f"{TYPE_HINTS}\nprint(encode({{}}, {{}}).decode())"
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True).stdout.strip() == "os"


def test_os_reached_without_importing_still_meets_the_kernel_layers(tmp_path: Path) -> None:
    """typing.sys.modules['os'] needs no import at all: the guard cannot see it, seccomp and Landlock can."""
    marker = tmp_path / "escaped"
    with pytest.raises(SandboxViolation, match="forbidden system call"):
        run("encode", attack(f"os.system('touch {marker}')\nreturn b''"))
    assert not marker.exists()


# --- 8. Threads that predate the layers --------------------------------------------------------------------


def test_control_a_filter_without_tsync_misses_threads_numpy_started(tmp_path: Path) -> None:
    """Why the child puts its layers in place before importing anything: numpy and OpenCV start threads."""
    script = (
        "import numpy, cv2, os, pyseccomp\nf = pyseccomp.SyscallFilter(pyseccomp.ALLOW)\n"
        "f.add_rule(pyseccomp.ERRNO(1), 'socket')\nf.load()\n"
        "print([open(f'/proc/self/task/{t}/status').read().split('Seccomp:')[1].split()[0] "
        "for t in os.listdir('/proc/self/task')])"
    )
    modes = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert "'0'" in modes and "'2'" in modes


def test_every_thread_the_libraries_start_is_under_the_layers() -> None:
    applied = run("encode", codec("return b'x'"), ["numpy", "cv2"]).applied
    assert "every thread" in applied.layers[Layer.SECCOMP] and "every thread" in applied.layers[Layer.IDENTITY]


def test_the_error_numbers_seen_by_code_are_real(shared: Path) -> None:
    """EPERM from the metadata family is what a library would see; it must not look like a missing file."""
    result = run("encode", attack(f"try:\n    os.chmod({str(shared)!r}, 0o600)\nexcept OSError as e:\n    return "
                                  "str(e.errno).encode()\nreturn b'none'"), readable=[shared])  # fmt: skip
    assert result.output == str(errno.EPERM).encode()


# --- 9. A child that outlives its worker --------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def survivors(worker: subprocess.Popen[str]) -> list[int]:
    """SIGKILL the worker once its child is up; the children still alive 5 s later."""
    deadline = time.monotonic() + 30
    while not (children := children_of(worker.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2)  # the child is past its layers and asleep in the codec
    os.kill(worker.pid, 9)
    worker.wait()
    time.sleep(5)
    return [pid for pid in children if Path(f"/proc/{pid}").exists()]


def test_a_codec_child_dies_with_its_worker() -> None:
    """The wall clock lives in the worker: a sleeping child left behind by a killed worker would run forever."""
    source = attack("import time\ntime.sleep(60)\nreturn b'x'")
    worker = subprocess.Popen([sys.executable, "-m", "tests.worker.sandbox.victim"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, cwd=REPO, text=True)  # fmt: skip
    worker.stdin.write(source)  # type: ignore[union-attr]
    worker.stdin.close()  # type: ignore[union-attr]
    assert not survivors(worker)


def test_control_a_child_without_the_parent_death_signal_outlives_its_parent() -> None:
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; subprocess.run([sys.executable, '-c', "
                               "'import time; time.sleep(20)'])"])  # fmt: skip
    left = survivors(parent)
    for pid in left:  # tidy up what the control left behind
        os.kill(pid, 9)
    assert left
