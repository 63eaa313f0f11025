"""The sandbox: an escape corpus that must be blocked or contained, and benign codecs that must pass.

Each escape runs twice: through the custom codec (the AST check usually stops it first) and
straight into the child with the AST check bypassed and the imports it wants allowed, to
show the deeper layers contain it on their own.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from codeclab.worker.codecs import make_codec
from codeclab.worker.codecs.custom import CustomCodec
from codeclab.worker.errors import CodecFailure, SandboxViolation
from codeclab.worker.sandbox.runner import SandboxLimits, run_child

SECRET = "s3cr3t-canary-value"
N, H, W = 2, 16, 16


def frames_npz() -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    planes = {"y": (N, H, W), "u": (N, H // 2, W // 2), "v": (N, H // 2, W // 2)}
    np.savez(buffer, **{k: rng.integers(0, 255, s, dtype=np.uint8) for k, s in planes.items()})
    return buffer.getvalue()


def codec(encode_body: str, decode_body: str = "return None", prelude: str = "") -> str:
    indent = "\n    "
    return (f"{prelude}\ndef encode(frames, params):{indent}{encode_body.replace(chr(10), indent)}\n"
            f"def decode(bitstream, header):{indent}{decode_body.replace(chr(10), indent)}\n")  # fmt: skip


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
}


TIGHT = SandboxLimits(wall_seconds=8, cpu_seconds=3, file_bytes=8 << 20, address_space_bytes=4 << 30)


def attempt(name: str, marker: Path) -> tuple[list[str], str]:
    imports, body = ESCAPES[name]
    return imports, codec(body.replace("MARKER", str(marker)))


def test_the_corpus_is_large_enough() -> None:
    assert len(ESCAPES) >= 25


@pytest.mark.parametrize("name", list(ESCAPES))
def test_escape_is_blocked_through_the_codec(name: str, marker: Path, tmp_path: Path) -> None:
    _, code = attempt(name, marker)
    with pytest.raises((SandboxViolation, CodecFailure)):
        codec_obj = CustomCodec({}, {"code": code}, TIGHT)
        reference = tmp_path / "ref.y4m"
        _write_reference(reference)
        codec_obj.encode(reference, tmp_path / "out.bin", lambda _: None)
    assert not marker.exists()


@pytest.mark.parametrize("name", list(ESCAPES))
def test_escape_is_contained_without_the_ast_check(name: str, marker: Path) -> None:
    imports, code = attempt(name, marker)
    wanted = sorted({"numpy", *imports})
    limits = replace(TIGHT, allowed_imports=wanted, preload=wanted)  # fmt: skip
    inputs = {"frames.npz": frames_npz(), "params.json": b"{}"}
    try:
        output = run_child("encode", code, inputs, limits)["bitstream.bin"]
    except (SandboxViolation, CodecFailure) as exc:
        assert "Traceback" not in str(exc) or "<codec>" in str(exc)
    else:  # it ran to the end: it must have achieved nothing
        assert SECRET.encode() not in output and b"root:" not in output
    assert not marker.exists()


def _write_reference(path: Path) -> None:
    from fractions import Fraction

    from codeclab.worker.video import Video, write_y4m

    with np.load(io.BytesIO(frames_npz())) as data:
        write_y4m(Video(data["y"], data["u"], data["v"], Fraction(25)), path)


def test_the_decoder_cannot_read_the_reference(tmp_path: Path) -> None:
    reference = tmp_path / "reference.y4m"
    _write_reference(reference)
    code = codec("return b'x'", f"return open({str(reference)!r}, 'rb').read()")
    with pytest.raises(SandboxViolation, match=r"'open' is not allowed"):
        CustomCodec({}, {"code": code}, TIGHT)
    # and with the AST check bypassed, Landlock keeps the reference out of reach
    inputs = {"bitstream.bin": b"x", "header.json": json.dumps({"width": W, "height": H, "frames": N}).encode()}
    limits = replace(TIGHT, preload=["numpy"])
    with pytest.raises(SandboxViolation, match=r"reached outside its folder: .*Permission denied"):
        run_child("decode", code, inputs, limits)


BENIGN = {
    "numpy zlib": codec(
        "import numpy as np, zlib\nreturn zlib.compress(np.concatenate([frames[p].ravel() for p in 'yuv']).tobytes())",
        "import numpy as np, zlib\nraw = np.frombuffer(zlib.decompress(bitstream), np.uint8)\nn, h, w = header['frames'], header['height'], header['width']\ny = raw[: n * h * w].reshape(n, h, w)\nu = raw[n * h * w : n * h * w * 5 // 4].reshape(n, h // 2, w // 2)\nv = raw[n * h * w * 5 // 4 :].reshape(n, h // 2, w // 2)\nreturn {'y': y, 'u': u, 'v': v}",
    ),
    "time.sleep and json params": codec(
        "import time, json\ntime.sleep(0.05)\nreturn json.dumps(params).encode() + frames['y'].tobytes() + frames['u'].tobytes() + frames['v'].tobytes()",
        "import numpy as np\nn, h, w = header['frames'], header['height'], header['width']\nraw = np.frombuffer(bitstream[bitstream.index(b'}') + 1:], np.uint8)\nreturn {'y': raw[:n*h*w].reshape(n,h,w), 'u': raw[n*h*w:n*h*w*5//4].reshape(n,h//2,w//2), 'v': raw[n*h*w*5//4:].reshape(n,h//2,w//2)}",
    ),
    "cv2 RGB output": codec(
        "import numpy as np\nreturn frames['y'].tobytes()",
        "import numpy as np, cv2\nn, h, w = header['frames'], header['height'], header['width']\ny = np.frombuffer(bitstream, np.uint8).reshape(n, h, w)\nreturn np.stack([cv2.cvtColor(f, cv2.COLOR_GRAY2RGB) for f in y])",
    ),
    "torch": codec(
        "import torch\nreturn (torch.from_numpy(frames['y'].copy()) // 4).to(torch.uint8).numpy().tobytes() + frames['u'].tobytes() + frames['v'].tobytes()",
        "import torch, numpy as np\nn, h, w = header['frames'], header['height'], header['width']\nraw = np.frombuffer(bitstream, np.uint8)\ny = (torch.from_numpy(raw[:n*h*w].copy()) * 4).numpy().reshape(n, h, w)\nreturn {'y': y, 'u': raw[n*h*w:n*h*w*5//4].reshape(n,h//2,w//2), 'v': raw[n*h*w*5//4:].reshape(n,h//2,w//2)}",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BENIGN))
def test_benign_codecs_pass(name: str, tmp_path: Path) -> None:
    from fractions import Fraction

    from codeclab.worker.codecs.base import StreamHeader

    reference = tmp_path / "ref.y4m"
    _write_reference(reference)
    custom = make_codec("custom", {"level": 3}, {"code": BENIGN[name]})
    custom.encode(reference, tmp_path / "b.bin", lambda _: None)
    decoded = custom.decode(tmp_path / "b.bin", StreamHeader(W, H, N, Fraction(25)), lambda _: None)
    assert decoded.y.shape == (N, H, W) and decoded.u.shape == (N, H // 2, W // 2)


def test_a_user_exception_is_a_codec_error_with_the_users_traceback(tmp_path: Path) -> None:
    reference = tmp_path / "ref.y4m"
    _write_reference(reference)
    code = codec("scale = params['missing']\nreturn b''")
    with pytest.raises(CodecFailure) as info:
        make_codec("custom", {}, {"code": code}).encode(reference, tmp_path / "b.bin", lambda _: None)
    message = str(info.value)
    assert 'File "<codec>", line 3, in encode' in message and "scale = params['missing']" in message
    assert "KeyError: 'missing'" in message and "child.py" not in message


def test_import_errors_name_the_line_and_how_to_allow() -> None:
    with pytest.raises(SandboxViolation, match=r"line 2: import of 'requests' is not allowed.*codec\.allow_imports"):
        make_codec(
            "custom",
            {},
            {
                "code": "import numpy\nimport requests\ndef encode(f, p):\n    return b''\ndef decode(b, h):\n    return None\n"
            },
        )


def test_a_decoder_returning_the_wrong_shape_is_a_codec_error(tmp_path: Path) -> None:
    from fractions import Fraction

    from codeclab.worker.codecs.base import StreamHeader

    code = codec("return b'x'", "import numpy as np\nreturn {'y': np.zeros((1, 4, 4), np.uint8)}")
    (tmp_path / "b.bin").write_bytes(b"x")
    with pytest.raises(CodecFailure, match=r"returned plane y as uint8 \(1, 4, 4\); expected uint8 \(2, 16, 16\)"):
        make_codec("custom", {}, {"code": code}).decode(
            tmp_path / "b.bin", StreamHeader(W, H, N, Fraction(25)), lambda _: None
        )


def test_a_sandbox_that_cannot_be_built_is_an_internal_error_not_the_codecs() -> None:
    from codeclab.worker.errors import WorkerError

    limits = replace(TIGHT, preload=["numpy", "no_such_module_anywhere"])
    with pytest.raises(WorkerError) as info:
        run_child("encode", codec("return b''"), {"frames.npz": frames_npz(), "params.json": b"{}"}, limits)
    assert info.value.error_type == "INTERNAL" and "could not be set up" in str(info.value)


def test_the_result_records_which_layers_this_host_applied(tmp_path: Path) -> None:
    reference = tmp_path / "ref.y4m"
    _write_reference(reference)
    custom = make_codec("custom", {}, {"code": BENIGN["numpy zlib"]})
    custom.encode(reference, tmp_path / "b.bin", lambda _: None)
    applied = custom.conditions()["sandbox"]["applied_on_this_host"]
    assert applied["seccomp"] is True and applied["rlimits"] is True
    from codeclab.worker.sandbox import landlock

    assert applied["landlock_abi"] == landlock.abi_version()  # 0 recorded honestly on a kernel without it
