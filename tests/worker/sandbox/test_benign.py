"""Real codec code must keep working inside every layer: numpy, zlib, struct, time, cv2 and torch."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from codeclab.worker.codecs import make_codec
from codeclab.worker.codecs.base import StreamHeader
from codeclab.worker.errors import CodecFailure, SandboxViolation, WorkerError
from codeclab.worker.sandbox.layers import REQUIRED, Layer
from tests.worker.sandbox.support import TIGHT, H, N, W, codec, planes, run, write_reference

DECODE_RAW = "import numpy as np\nn, h, w = header['frames'], header['height'], header['width']\nraw = np.frombuffer(RAW, np.uint8)\nreturn {'y': raw[:n*h*w].reshape(n,h,w), 'u': raw[n*h*w:n*h*w*5//4].reshape(n,h//2,w//2), 'v': raw[n*h*w*5//4:].reshape(n,h//2,w//2)}"

BENIGN = {
    "numpy zlib": codec(
        "import numpy as np, zlib\nreturn zlib.compress(np.concatenate([frames[p].ravel() for p in 'yuv']).tobytes())",
        DECODE_RAW.replace("RAW", "__import__('zlib').decompress(bitstream)").replace("__import__('zlib')", "zlib").replace("import numpy as np", "import numpy as np, zlib"),
    ),
    "struct header, time.sleep and json params": codec(
        "import time, json, struct\ntime.sleep(0.05)\nbody = b''.join(frames[p].tobytes() for p in 'yuv')\nreturn struct.pack('>I', len(body)) + body",
        DECODE_RAW.replace("RAW", "bitstream[4:4 + struct.unpack('>I', bitstream[:4])[0]]").replace("import numpy as np", "import numpy as np, struct"),
    ),
    "cv2 PNG in memory, RGB output": codec(
        "import numpy as np, cv2, struct\nparts = []\nfor f in frames['y']:\n    ok, png = cv2.imencode('.png', f)\n    parts.append(struct.pack('>I', len(png)) + png.tobytes())\nreturn b''.join(parts)",
        "import numpy as np, cv2, struct\nout, at = [], 0\nwhile at < len(bitstream):\n    size = struct.unpack('>I', bitstream[at:at + 4])[0]\n    gray = cv2.imdecode(np.frombuffer(bitstream[at + 4:at + 4 + size], np.uint8), cv2.IMREAD_GRAYSCALE)\n    out.append(cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB))\n    at += 4 + size\nreturn np.stack(out)",
    ),
    "torch with 2 threads": codec(
        "import torch\ntorch.set_num_threads(2)\nw = torch.randn(64, 64)\n(w @ w).sum()\nreturn (torch.from_numpy(frames['y'].copy()) // 4).to(torch.uint8).numpy().tobytes() + frames['u'].tobytes() + frames['v'].tobytes()",
        "import torch, numpy as np\ntorch.set_num_threads(2)\nn, h, w = header['frames'], header['height'], header['width']\nraw = np.frombuffer(bitstream, np.uint8)\ny = (torch.from_numpy(raw[:n*h*w].copy()) * 4).numpy().reshape(n, h, w)\nreturn {'y': y, 'u': raw[n*h*w:n*h*w*5//4].reshape(n,h//2,w//2), 'v': raw[n*h*w*5//4:].reshape(n,h//2,w//2)}",
    ),
    "a scratch file of its own": codec(
        "import numpy as np\nnp.save('frames.npy', frames['y'])\nreturn np.load('frames.npy').tobytes() + frames['u'].tobytes() + frames['v'].tobytes()",
        DECODE_RAW.replace("RAW", "bitstream"),
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.slow) if "torch" in name else name for name in BENIGN]
)
def test_benign_codecs_pass_under_every_layer(name: str, tmp_path: Path) -> None:
    reference = write_reference(tmp_path / "ref.y4m")
    custom = make_codec("custom", {"level": 3}, code=BENIGN[name])
    custom.protect_source([reference, tmp_path])
    custom.encode(reference, tmp_path / "b.bin", lambda _: None)
    decoded = custom.decode(tmp_path / "b.bin", StreamHeader(W, H, N, Fraction(25)), lambda _: None)
    assert decoded.y.shape == (N, H, W) and decoded.u.shape == (N, H // 2, W // 2)
    if "zlib" in name or "struct" in name:
        assert (decoded.y == planes()["y"]).all() and (decoded.v == planes()["v"]).all()
    for role in ("encoder", "decoder"):
        record = custom.conditions()["sandbox"][role]
        assert set(record["applied"]) >= {layer.value for layer in REQUIRED} and record["trusted"] is False


def test_a_user_exception_is_a_codec_error_with_the_users_traceback(tmp_path: Path) -> None:
    reference = write_reference(tmp_path / "ref.y4m")
    code = codec("scale = params['missing']\nreturn b''")
    with pytest.raises(CodecFailure) as info:
        make_codec("custom", {}, code=code).encode(reference, tmp_path / "b.bin", lambda _: None)
    message = str(info.value)
    assert 'File "<codec>", line 3, in encode' in message and "scale = params['missing']" in message
    assert "KeyError: 'missing'" in message and "child.py" not in message


def test_import_errors_name_the_line_and_how_to_allow() -> None:
    source = "import numpy\nimport requests\ndef encode(f, p):\n    return b''\ndef decode(b, h):\n    return None\n"
    with pytest.raises(
        SandboxViolation,
        match=r"line 2: import of 'requests' is not allowed.*codec\.allow_imports.*--allow-import requests\)",
    ):
        make_codec("custom", {}, code=source)


def test_a_decoder_returning_the_wrong_shape_is_a_codec_error(tmp_path: Path) -> None:
    code = codec("return b'x'", "import numpy as np\nreturn {'y': np.zeros((1, 4, 4), np.uint8)}")
    (tmp_path / "b.bin").write_bytes(b"x")
    with pytest.raises(CodecFailure, match=r"returned plane y as uint8 \(1, 4, 4\); expected uint8 \(2, 16, 16\)"):
        make_codec("custom", {}, code=code).decode(
            tmp_path / "b.bin", StreamHeader(W, H, N, Fraction(25)), lambda _: None
        )


def test_a_sandbox_that_cannot_be_built_is_an_internal_error_not_the_codecs() -> None:
    with pytest.raises(WorkerError) as info:
        run("encode", codec("return b''"), ["no_such_module_anywhere"])
    assert info.value.error_type == "INTERNAL" and "could not be set up" in str(info.value)
    assert "no_such_module_anywhere" in str(info.value)


def test_what_was_applied_is_checked_by_the_worker_in_proc_not_taken_from_the_child() -> None:
    applied = run("encode", codec("return b'x'")).applied
    assert not applied.missing and not applied.trusted
    assert "every thread" in applied.layers[Layer.SECCOMP] and "every thread" in applied.layers[Layer.IDENTITY]
    assert "no capabilities" in applied.layers[Layer.IDENTITY]
    assert applied.layers[Layer.PIDS].startswith(f"RLIMIT_NPROC {TIGHT.max_threads} ")
    assert "private tmpfs of 33554432 bytes" in applied.layers[Layer.SCRATCH]
