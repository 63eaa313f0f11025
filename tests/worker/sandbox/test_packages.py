"""Codec packages in the sandbox: modules with relative imports, ctx (weights, progress, device), limits, GPU rules.

The package here is a stand-in for what codeclab/worker/packages/ hands over once it has unpacked
and checked one: a folder with codec.json, a Python package and a safetensors file.
"""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from codeclab.experiments.limits import CODEC_CAPS
from codeclab.experiments.schema import CodecSpec
from codeclab.worker.codecs import build_codec
from codeclab.worker.codecs.base import StreamHeader
from codeclab.worker.codecs.package import PackageCodec, resolve_device
from codeclab.worker.errors import CodecFailure, InvalidSpec, SandboxViolation, Stalled
from codeclab.worker.progress import Progress, StallWatchdog
from codeclab.worker.sandbox import readable
from codeclab.worker.sandbox.landlock import Access, Rule
from codeclab.worker.sandbox.layers import Layer, SandboxLimits, SandboxPolicy, codec_limits
from codeclab.worker.sources import builtin_clip_path
from codeclab.worker.video import Video, write_y4m
from tests.worker.sandbox.support import FULL, SECRET, TIGHT, H, N, W, planes, write_reference

pytestmark = pytest.mark.slow  # real child processes per case

HEADER = StreamHeader(W, H, N, Fraction(25))
ROUND_TRIP_INDENTED = {
    "mycodec/__init__.py": "",
    "mycodec/layers.py": """
        import zlib
        def pack(data):
            return zlib.compress(data)
        def unpack(data):
            return zlib.decompress(data)
    """,
    "mycodec/codec.py": """
        import numpy as np
        from . import layers
        from .planes import split
        def encode(frames, params, ctx):
            scale = ctx.weights('model.safetensors')['scale'] if WEIGHTS else None
            assert scale is None or float(scale[0]) == 3.0, scale
            ctx.progress(1)
            ctx.progress(1)
            ctx.progress(len(frames['y']))
            return layers.pack(b''.join(frames[p].tobytes() for p in 'yuv'))
        def decode(bitstream, header, ctx):
            assert ctx.device == 'cpu'
            return split(layers.unpack(bitstream), header)
    """,
    "mycodec/planes.py": """
        import numpy as np
        def split(raw, header):
            n, h, w = header['frames'], header['height'], header['width']
            raw = np.frombuffer(raw.ljust(n * h * w * 3 // 2, b'\\0')[: n * h * w * 3 // 2], np.uint8)
            return {'y': raw[:n*h*w].reshape(n, h, w), 'u': raw[n*h*w:n*h*w*5//4].reshape(n, h//2, w//2),
                    'v': raw[n*h*w*5//4:].reshape(n, h//2, w//2)}
    """,
}
ROUND_TRIP = {name: textwrap.dedent(text) for name, text in ROUND_TRIP_INDENTED.items()}


def make_package(folder: Path, files: dict[str, str], weights: bool = False, **replace: str) -> Path:
    """A stand-in for an unpacked, checked package: codec.json, modules, optionally model.safetensors."""
    folder.mkdir(parents=True)
    for name, text in files.items():
        source = textwrap.dedent(text).replace("WEIGHTS", str(weights))
        for key, value in replace.items():
            source = source.replace(key, value)
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(source)
    hashes = {}
    if weights:
        save_file({"scale": torch.tensor([3.0])}, str(folder / "model.safetensors"), metadata={"scale": "3"})
        hashes["model.safetensors"] = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    manifest = {"name": "mycodec", "version": "0.1", "entry": "mycodec.codec", "weights": hashes, "device": "cpu"}
    (folder / "codec.json").write_text(json.dumps(manifest))
    return folder


def package_codec(root: Path, limits: SandboxLimits = TIGHT, policy: SandboxPolicy = FULL) -> PackageCodec:
    manifest = json.loads((root / "codec.json").read_text())
    return PackageCodec(
        {}, root, manifest["entry"], manifest["weights"], manifest["device"], "test package", limits=limits,
        policy=policy,
    )  # fmt: skip


def round_trip(codec: PackageCodec, tmp_path: Path, reference: Path | None = None) -> Video:
    reference = reference or write_reference(tmp_path / "ref.y4m")
    codec.protect_source([reference, tmp_path])
    codec.encode(reference, tmp_path / "b.bin", lambda _: None)
    return codec.decode(tmp_path / "b.bin", HEADER, lambda _: None)


# --- running a package -------------------------------------------------------------------------------------


def test_a_package_of_several_modules_with_relative_imports_runs(tmp_path: Path) -> None:
    codec = package_codec(make_package(tmp_path / "pkg", ROUND_TRIP))
    decoded = round_trip(codec, tmp_path)
    assert (decoded.y == planes()["y"]).all() and (decoded.v == planes()["v"]).all()
    assert codec.conditions()["sandbox"]["decoder"]["trusted"] is False
    assert codec.conditions()["device"] == "cpu"


def test_ctx_weights_loads_a_safetensors_file_the_manifest_lists(tmp_path: Path) -> None:
    root = make_package(tmp_path / "pkg", ROUND_TRIP, weights=True)
    codec = package_codec(root, SandboxLimits(wall_seconds=60, cpu_seconds=60))  # torch loads in each child
    assert (round_trip(codec, tmp_path).u == planes()["u"]).all()


def test_ctx_gives_a_weights_files_metadata_and_its_checked_sha256(tmp_path: Path) -> None:
    files = {
        **ROUND_TRIP,
        "mycodec/codec.py": """
            import json
            def encode(frames, params, ctx):
                name = 'model.safetensors'
                return json.dumps([ctx.weights_metadata(name), ctx.weights_sha256(name)]).encode()
            def decode(bitstream, header, ctx):
                raise ValueError('not used')
        """,
    }
    root = make_package(tmp_path / "pkg", files, weights=True)
    codec = package_codec(root, SandboxLimits(wall_seconds=60, cpu_seconds=60))
    reference = write_reference(tmp_path / "ref.y4m")
    codec.protect_source([reference, tmp_path])
    codec.encode(reference, tmp_path / "b.bin", lambda _: None)
    metadata, digest = json.loads((tmp_path / "b.bin").read_text())
    assert metadata == {"scale": "3"}
    assert digest == hashlib.sha256((root / "model.safetensors").read_bytes()).hexdigest()


def test_ctx_weights_refuses_a_file_the_manifest_does_not_list(tmp_path: Path) -> None:
    files = {
        **ROUND_TRIP,
        "mycodec/codec.py": ROUND_TRIP["mycodec/codec.py"].replace("'model.safetensors'", "'codec.json'"),
    }
    codec = package_codec(make_package(tmp_path / "pkg", files, weights=True), SandboxLimits(wall_seconds=60))
    with pytest.raises(CodecFailure, match=r"ctx.weights\('codec.json'\): codec.json lists no such weights file"):
        round_trip(codec, tmp_path)


def test_progress_reaches_the_workers_callback_rising_and_bounded(tmp_path: Path) -> None:
    codec = package_codec(make_package(tmp_path / "pkg", ROUND_TRIP))
    reference = write_reference(tmp_path / "ref.y4m")
    seen: list[int] = []
    codec.protect_source([reference])
    codec.encode(reference, tmp_path / "b.bin", seen.append)
    assert seen == [1, 2, 2]  # the child's two reports (its repeat of 1 is not sent), then the codec's own at the end


# --- the static check and errors for people ------------------------------------------------------------------


def test_the_allow_list_applies_to_every_module_of_the_package(tmp_path: Path) -> None:
    files = {**ROUND_TRIP, "mycodec/layers.py": "import zlib\nimport socket\ndef pack(d):\n    return d\n"}
    with pytest.raises(SandboxViolation, match=r"codec package file mycodec/layers.py line 2: import of 'socket'"):
        package_codec(make_package(tmp_path / "pkg", files))


@pytest.mark.parametrize("name", ["mycodec/fast.pyc", "mycodec/fast.cpython-311-x86_64-linux-gnu.so", "mycodec/fast.abi3.so",
                                  "mycodec/__pycache__/codec.cpython-311.pyc"])  # fmt: skip
def test_compiled_modules_which_the_static_check_cannot_read_are_refused(name: str, tmp_path: Path) -> None:
    root = make_package(tmp_path / "pkg", ROUND_TRIP)
    (root / name).parent.mkdir(exist_ok=True)
    (root / name).write_bytes(b"\x7fELF")
    with pytest.raises(SandboxViolation, match=r"codec package file mycodec/.*compiled modules and bytecode"):
        package_codec(root)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("from . import layers", "from . import layerz"),
            r"(?s)File \"mycodec/codec.py\", line 3.*ImportError: cannot ",
        ),
        (("def decode(", "def decoded("), r"entry module 'mycodec.codec' defines no decode\(\)"),
        (
            ("return layers.pack(", "return layers.pack(1 / 0, "),
            r"(?s)codec package encoder raised.*File \"mycodec/codec.py\".*ZeroDivisionError",
        ),
    ],
    ids=["import error", "no entry function", "exception"],
)
def test_user_mistakes_are_codec_errors_with_the_users_traceback(
    change: tuple[str, str], expected: str, tmp_path: Path
) -> None:
    files = {**ROUND_TRIP, "mycodec/codec.py": ROUND_TRIP["mycodec/codec.py"].replace(*change)}
    with pytest.raises(CodecFailure, match=expected) as info:
        round_trip(package_codec(make_package(tmp_path / "pkg", files)), tmp_path)
    assert info.value.error_type == "CODEC_ERROR" and "child.py" not in str(info.value)


# --- attacks: the package folder is all that is newly readable --------------------------------------------------

READER = {
    **ROUND_TRIP,
    "mycodec/codec.py": """
        import typing
        from . import layers
        from .planes import split
        os = typing.sys.modules['os']
        def encode(frames, params, ctx):
            return b'x'
        def decode(bitstream, header, ctx):
            try:
                fd = os.open(TARGET, os.O_RDONLY)
                data = os.read(fd, SIZE)
            except OSError:
                data = b''
            return split(data, header)
    """,
}


def _targets(tmp_path: Path) -> dict[str, tuple[Path, bytes]]:
    reference = write_reference(tmp_path / "ref.y4m")
    clip = builtin_clip_path("carphone")
    other = make_package(tmp_path / "other", ROUND_TRIP, weights=True) / "model.safetensors"
    credentials = tmp_path / "home" / ".aws" / "credentials"
    credentials.parent.mkdir(parents=True)
    credentials.write_text(f"[default]\naws_secret_access_key = {SECRET}\n")
    return {
        "reference": (reference, reference.read_bytes()[:64]),
        "source clip": (clip, clip.read_bytes()[:64]),
        "another package": (other, other.read_bytes()[:64]),
        "credentials": (credentials, credentials.read_bytes()),
    }


@pytest.mark.parametrize("target", ["reference", "source clip", "another package", "credentials"])
def test_a_package_cannot_read_outside_its_folder_and_the_control_shows_the_read_works(
    target: str, tmp_path: Path
) -> None:
    path, content = _targets(tmp_path)[target]
    root = make_package(tmp_path / "pkg", READER, TARGET=repr(str(path)), SIZE=str(len(content)))
    (tmp_path / "b.bin").write_bytes(b"x")

    def leaked(policy: SandboxPolicy) -> bool:
        codec = package_codec(root, policy=policy)
        codec.protect_source([tmp_path / "ref.y4m"])
        video = codec.decode(tmp_path / "b.bin", HEADER, lambda _: None)
        raw = b"".join(p.tobytes() for p in (video.y, video.u, video.v))
        return raw[: len(content)] == content

    assert not leaked(FULL)
    assert leaked(FULL.without(Layer.LANDLOCK, Layer.NAMESPACES))


def test_the_workers_environment_does_not_reach_a_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    files = {
        **ROUND_TRIP,
        "mycodec/codec.py": ROUND_TRIP["mycodec/codec.py"]
        .replace("import numpy as np", "import numpy as np, typing\nos = typing.sys.modules['os']")
        .replace("return layers.pack(", "return repr(sorted(os.environ.items())).encode() or layers.pack("),
    }
    codec = package_codec(make_package(tmp_path / "pkg", files))
    reference = write_reference(tmp_path / "ref.y4m")
    codec.encode(reference, tmp_path / "b.bin", lambda _: None)
    environment = (tmp_path / "b.bin").read_text()
    assert "PATH" in environment and SECRET not in environment and SECRET in os.environ.values()


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("struct.pack('>cQQ', b'P', 8, 99)", "reported 99 frames done after 0, of 2"),
        ("struct.pack('>cQ', b'P', 9) + bytes(9)", "PROGRESS frame of 9 bytes, not 8"),
        ("struct.pack('>cQQ', b'P', 8, 1) + struct.pack('>cQQ', b'P', 8, 1)", "reported 1 frames done after 1"),
    ],
    ids=["beyond the clip", "wrong length", "not rising"],
)
def test_forged_progress_frames_are_refused(frame: str, expected: str, tmp_path: Path) -> None:
    files = {
        **ROUND_TRIP,
        "mycodec/codec.py": ROUND_TRIP["mycodec/codec.py"]
        .replace("import numpy as np", "import numpy as np, struct, typing\nos = typing.sys.modules['os']")
        .replace("ctx.progress(1)\n", f"os.write(ctx._fd, {frame})\n", 1),
    }
    with pytest.raises(SandboxViolation, match=expected):
        round_trip(package_codec(make_package(tmp_path / "pkg", files)), tmp_path)


# --- progress and the stall watchdog -----------------------------------------------------------------------

SLOW = {
    **ROUND_TRIP,
    "mycodec/codec.py": ROUND_TRIP["mycodec/codec.py"]
    .replace("import numpy as np", "import numpy as np, time")
    .replace(
        "ctx.progress(1)\n",
        "for done in range(1, len(frames['y']) + 1):\n        time.sleep(0.5)\n        REPORT\n",
        1,
    ),
}
FRAMES_SLOW = 12  # 6 s of encoding, in steps of 0.5 s
STALL_SECONDS = 3  # above a loaded machine's child start-up (numpy and the layers) before the first report


def _slow_run(tmp_path: Path, report: str) -> Callable[[], None]:
    frames = {k: np.repeat(v[:1], FRAMES_SLOW, axis=0) for k, v in planes().items()}
    reference = tmp_path / "ref.y4m"
    write_y4m(Video(frames["y"], frames["u"], frames["v"], Fraction(25)), reference)
    codec = package_codec(make_package(tmp_path / "pkg", SLOW, REPORT=report), SandboxLimits(wall_seconds=30))
    codec.protect_source([reference])

    def run() -> None:
        progress = Progress(FRAMES_SLOW, [])
        with StallWatchdog(progress, STALL_SECONDS, lambda _: None):
            codec.encode(reference, tmp_path / "b.bin", progress.stage("encode", FRAMES_SLOW))

    return run


def test_a_slow_codec_that_reports_progress_is_not_stalled(tmp_path: Path) -> None:
    start = time.monotonic()
    _slow_run(tmp_path, "ctx.progress(done)")()
    assert time.monotonic() - start > 6


def test_a_slow_codec_that_stops_reporting_is_stalled(tmp_path: Path) -> None:
    run = _slow_run(tmp_path, "ctx.progress(min(done, 2))")  # reports twice, then nothing for 5 s
    with pytest.raises(Stalled, match="stall limit 3 s"):
        run()


# --- limits --------------------------------------------------------------------------------------------


def test_spec_limits_apply_under_the_operators_caps() -> None:
    limits = codec_limits({"wall_seconds": 1200, "memory_bytes": 1 << 30}, cuda=False, environ={})
    assert (limits.wall_seconds, limits.cpu_seconds, limits.address_space_bytes) == (1200, 600, 1 << 30)
    assert codec_limits({"memory_bytes": 1 << 30}, cuda=True, environ={}).address_space_bytes is None
    caps = {CODEC_CAPS["cpu_seconds"].env: "900"}
    with pytest.raises(
        InvalidSpec, match=r"limits.codec.cpu_seconds: 1000 is over.*cap of 900.*CODECLAB_CODEC_MAX_CPU"
    ):
        codec_limits({"cpu_seconds": 1000}, cuda=False, environ=caps)


def test_a_specs_limits_codec_reaches_the_custom_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    entry: CodecSpec = {"name": "custom", "params": {}, "trusted": False, "code": "def encode(f, p):\n    return b''\n"
                        "def decode(b, h):\n    return None\n"}  # fmt: skip
    monkeypatch.setenv(CODEC_CAPS["wall_seconds"].env, "100")
    assert build_codec(entry, {"wall_seconds": 90, "cpu_seconds": 30}).limits.cpu_seconds == 30  # type: ignore[attr-defined]
    with pytest.raises(InvalidSpec, match="CODECLAB_CODEC_MAX_WALL_SECONDS"):
        build_codec(entry, {"wall_seconds": 120})


def test_the_wall_clock_error_names_the_limit_and_the_setting(tmp_path: Path) -> None:
    files = {**SLOW, "mycodec/codec.py": SLOW["mycodec/codec.py"].replace("REPORT", "pass")}
    codec = package_codec(make_package(tmp_path / "pkg", files), SandboxLimits(wall_seconds=3))
    with pytest.raises(SandboxViolation, match=r"wall-clock limit of 3 s; raise limits.codec.wall_seconds.*CODECLAB_"):
        reference = tmp_path / "ref.y4m"
        frames = {k: np.repeat(v[:1], FRAMES_SLOW, axis=0) for k, v in planes().items()}
        write_y4m(Video(frames["y"], frames["u"], frames["v"], Fraction(25)), reference)
        codec.encode(reference, tmp_path / "b.bin", lambda _: None)


# --- the GPU: exactly CUDA's device nodes ---------------------------------------------------------------------


def test_cuda_gets_exactly_its_device_nodes_read_write(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    cuda = ["nvidia0", "nvidia1", "nvidia12", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"]
    for name in [*cuda, "nvidia-modeset", "nvidia-fs", "nvme0", "nvidia0p1", "sda"]:
        (dev / name).touch()
    (dev / "nvidia-caps").mkdir()
    assert readable.cuda_devices(dev) == [Rule(dev / name, Access.DEVICE) for name in sorted(cuda)]
    assert readable.cuda_devices(tmp_path / "absent") == []


def test_a_package_asking_for_cuda_on_a_host_without_it_is_refused_clearly() -> None:
    assert resolve_device("any", cuda=False) == "cpu" and resolve_device("any", cuda=True) == "cuda"
    with pytest.raises(CodecFailure, match=r'asks for device "cuda" and this host has no CUDA device'):
        resolve_device("cuda", cuda=False)


def test_the_result_records_the_device_the_package_runs_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_package(tmp_path / "pkg", ROUND_TRIP)
    assert package_codec(root).device == "cpu"
    monkeypatch.setattr("codeclab.worker.codecs.package.has_cuda", lambda: True)  # a GPU host, as far as it asks
    manifest = json.loads((root / "codec.json").read_text())
    on_gpu = PackageCodec({}, root, manifest["entry"], {}, "any", "test package")
    assert on_gpu.device == "cuda" and on_gpu.conditions()["device"] == "cuda"  # resources.device reads .device
