"""The escape corpus: each technique must be blocked through the codec, and contained without the AST check.

Each escape runs twice: through the custom codec (the AST check usually stops it first) and
straight into the child with the AST check bypassed and the imports it wants allowed, to
show the deeper layers contain it on their own. The red-team classes, each with a control
that shows the attack works with its layer off, are in test_red_team.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from codeclab.worker.codecs.custom import CustomCodec
from codeclab.worker.errors import CodecFailure, SandboxViolation
from tests.worker.sandbox.support import SECRET, TIGHT, codec, run, write_reference

pytestmark = pytest.mark.slow  # real child processes per case: `make test` runs them, `make test-fast` does not


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file an escape would create, and a secret it would steal from the environment."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    return tmp_path / "escaped"


# name -> (imports the attempt wants, encode body); MARKER and PARENT are filled in
ESCAPES = {
    "subclasses walk to os.system": (
        [],
        "for c in ().__class__.__base__.__subclasses__():\n    if c.__name__ == '_wrap_close':\n        c.__init__.__globals__['system']('touch MARKER')\nreturn b''",
    ),
    "generator gi_frame f_globals walk": (
        [],
        "g = (x for x in [1])\nb = g.gi_frame.f_back.f_globals['__builtins__']\nb['__import__']('os').system('touch MARKER')\nreturn b''",
    ),
    "__builtins__ __import__": ([], "__builtins__['__import__']('os').system('touch MARKER')\nreturn b''"),
    "__import__ call": ([], "__import__('os').system('touch MARKER')\nreturn b''"),
    "importlib": (["importlib"], "import importlib\nimportlib.import_module('os').system('touch MARKER')\nreturn b''"),
    "ctypes libc system": (["ctypes"], "import ctypes\nctypes.CDLL(None).system(b'touch MARKER')\nreturn b''"),
    "numpy.ctypeslib attribute to libc": (
        [],
        "import numpy as np\nnp.ctypeslib.ctypes.CDLL(None).system(b'touch MARKER')\nreturn b''",
    ),
    "os.system": (["os"], "import os\nos.system('touch MARKER')\nreturn b''"),
    "open /etc/passwd": ([], "return open('/etc/passwd', 'rb').read()"),
    "write outside the folder": ([], "open('MARKER', 'w').write('x')\nreturn b''"),
    "environment credentials": (["os"], "import os\nreturn repr(dict(os.environ)).encode()"),
    "parent environ through /proc": (["os"], "import os\nreturn open(f'/proc/{os.getppid()}/environ', 'rb').read()"),
    "socket connect": (["socket"], "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\nreturn b''"),
    "subprocess": (["subprocess"], "import subprocess\nsubprocess.run(['touch', 'MARKER'])\nreturn b''"),
    "fork bomb": (["os"], "import os\nwhile True:\n    os.fork()"),
    "kill the worker": (["os", "signal"], "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nreturn b''"),
    "memory bomb": ([], "x = bytearray(64 * 1024 ** 3)\nreturn b''"),
    "cpu loop": ([], "while True:\n    pass"),
    "hang past the wall clock": (["time"], "import time\ntime.sleep(1000)"),
    "ignore SIGTERM then hang": (
        ["signal", "time"],
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(1000)",
    ),
    "huge file": ([], "f = open('big.bin', 'wb')\nwhile True:\n    f.write(b'x' * 1048576)"),
    "pickle payload": (
        ["pickle", "os"],
        "import pickle, os\nclass P:\n    def __reduce__(self):\n        return (os.system, ('touch MARKER',))\npickle.loads(pickle.dumps(P()))\nreturn b''",
    ),
    "torch.load payload": (
        ["torch", "pickle", "os", "io"],
        "import torch, pickle, os, io\nclass P:\n    def __reduce__(self):\n        return (os.system, ('touch MARKER',))\ntorch.load(io.BytesIO(pickle.dumps(P())), weights_only=False)\nreturn b''",
    ),
    "eval of an import": ([], "eval(\"__import__('os')\").system('touch MARKER')\nreturn b''"),
    "exec of an import": ([], "exec(\"import os; os.system('touch MARKER')\")\nreturn b''"),
    "getattr string concatenation": (
        [],
        "c = getattr((), '__cl' + 'ass__')\nfor s in getattr(getattr(c, '__ba' + 'se__'), '__subcl' + 'asses__')():\n    if s.__name__ == '_wrap_close':\n        s.__init__.__globals__['system']('touch MARKER')\nreturn b''",
    ),
    "sys.modules lookup": (["sys"], "import sys\nsys.modules['os'].system('touch MARKER')\nreturn b''"),
    "ptrace the worker": (
        ["ctypes", "os"],
        "import ctypes, os\nctypes.CDLL(None).ptrace(16, os.getppid(), 0, 0)\nreturn b''",
    ),
    "write /proc/self/mem": ([], "open('/proc/self/mem', 'wb').write(b'x')\nreturn b''"),
    "execve through os.exec": (["os"], "import os\nos.execv('/bin/sh', ['sh', '-c', 'touch MARKER'])"),
    "io_uring ring (its operations bypass seccomp)": (
        ["ctypes"],
        "import ctypes\nparams = ctypes.create_string_buffer(120)\nreturn str(ctypes.CDLL(None).syscall(425, 8, params)).encode()",
    ),
    "x32 system call entry": (
        ["ctypes"],
        "import ctypes\nreturn str(ctypes.CDLL(None).syscall(0x40000000 | 41, 2, 1, 0)).encode()",
    ),
    "user keyring (outlives the process)": (
        ["ctypes"],
        "import ctypes\nreturn str(ctypes.CDLL(None).syscall(248, b'user', b'codeclab', b'frames', 6, -4)).encode()",
    ),
    "user namespace": (["ctypes"], "import ctypes\nreturn str(ctypes.CDLL(None).unshare(0x10000000)).encode()"),
    "mount a tmpfs": (
        ["ctypes"],
        "import ctypes\nreturn str(ctypes.CDLL(None).mount(b'x', b'.', b'tmpfs', 0, None)).encode()",
    ),
}


def attempt(name: str, marker: Path) -> tuple[list[str], str]:
    imports, body = ESCAPES[name]
    return imports, codec(body.replace("MARKER", str(marker)))


def test_the_corpus_is_large_enough() -> None:
    assert len(ESCAPES) >= 35


@pytest.mark.parametrize("name", list(ESCAPES))
def test_escape_is_blocked_through_the_codec(name: str, marker: Path, tmp_path: Path) -> None:
    _, code = attempt(name, marker)
    with pytest.raises((SandboxViolation, CodecFailure)):
        codec_obj = CustomCodec({}, {"code": code}, TIGHT)
        reference = write_reference(tmp_path / "ref.y4m")
        codec_obj.encode(reference, tmp_path / "out.bin", lambda _: None)
    assert not marker.exists()


@pytest.mark.parametrize("name", list(ESCAPES))
def test_escape_is_contained_without_the_ast_check(name: str, marker: Path) -> None:
    imports, code = attempt(name, marker)
    try:
        output = run("encode", code, imports).output
    except (SandboxViolation, CodecFailure) as exc:
        assert "Traceback" not in str(exc) or "<codec>" in str(exc)
        assert SECRET not in str(exc)
    else:  # it ran to the end: it must have achieved nothing
        assert SECRET.encode() not in output and b"root:" not in output
    assert not marker.exists()
