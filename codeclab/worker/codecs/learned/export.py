"""The built-in learned codec, with a weights file, written out as a codec package.

`codeclab codec export-learned` writes it (`quality` and `intra_period` params, as the built-in codec
has); `examples/codecs/learnedvideo/` is its output for the shipped weights (a test regenerates it and
compares). The package's modules are this codec's own source files, with their codeclab imports made
relative, so the package and `learned` run the same code on the same weights and write the same bytes.
The one file written by hand for the package is `package_entry.py`, its `codec.py`.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from codeclab import __version__
from codeclab.experiments.codec_package import MANIFEST_NAME
from codeclab.worker.codecs.learned.package_entry import WEIGHTS_FILE
from codeclab.worker.codecs.learned.weights import read_record
from codeclab.worker.hashing import sha256_file
from codeclab.worker.packages.manifest import PackageError

# codeclab module -> its file in the package's folder
MODULES = {
    "codeclab.worker.codecs.learned.package_entry": "codec.py",
    "codeclab.worker.codecs.learned.frame_coder": "frame_coder.py",
    "codeclab.worker.codecs.learned.motion": "motion.py",
    "codeclab.worker.codecs.learned.model": "model.py",
    "codeclab.worker.codecs.learned.entropy": "entropy.py",
    "codeclab.worker.codecs.learned.stream": "stream.py",
    "codeclab.worker.codecs.framing": "framing.py",
}
# Beyond the sandbox's default allow-list: a spec that runs the package names them in codec.allow_imports.
EXTRA_IMPORTS = ("constriction", "scipy")
_CODECLAB_IMPORT = re.compile(r"^from (codeclab(?:\.\w+)+) import", re.MULTILINE)


@dataclass(frozen=True)
class Exported:
    root: Path
    name: str
    version: str
    weights: dict[str, str]  # file -> sha256


def export_learned(weights: Path, out: Path, name: str = "learnedvideo", replace: bool = False) -> Exported:
    """Write the package for the weights file `weights` into the folder `out` (new, or replaced when told)."""
    record = read_record(weights)
    digests = {WEIGHTS_FILE: sha256_file(weights)}
    version = f"{__version__}+{digests[WEIGHTS_FILE][:12]}"
    if out.exists() and not replace:
        raise PackageError(f"{out} exists; choose a new folder, or pass --replace to overwrite it")
    staging = out.with_name(f".{out.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _write(staging, name, version, weights, record["qualities"], digests)
        if replace and out.exists():
            shutil.rmtree(out)
        try:
            staging.rename(out)
        except OSError as exc:  # another export landed at `out` meanwhile: its files are not ours to replace
            raise PackageError(f"{out} appeared while exporting ({exc.strerror}); nothing was written there") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Exported(out, name, version, digests)


def _write(root: Path, name: str, version: str, weights: Path, qualities: int, digests: dict[str, str]) -> None:
    modules = root / name
    modules.mkdir(parents=True)
    (modules / "__init__.py").write_text(
        '"""The codeclab learned video codec, exported by `codeclab codec export-learned`."""\n'
    )
    for module, filename in MODULES.items():
        (modules / filename).write_text(portable_source(module))
    shutil.copyfile(weights, root / WEIGHTS_FILE)
    quality = {
        "type": "integer", "minimum": 1, "maximum": qualities, "default": min(4, qualities),
        "description": "rate point: 1 = fewest bits",
    }  # fmt: skip
    intra_period = {
        "type": "integer", "minimum": 1, "maximum": 65535, "default": 32,
        "description": "frames per group: an I-frame, then P-frames; 1 = all-intra",
    }  # fmt: skip
    manifest = {
        "name": name,
        "version": version,
        "entry": f"{name}.codec",
        "weights": digests,
        "params": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"quality": quality, "intra_period": intra_period},
        },
        "device": "any",
        "rate_param": "quality",
    }
    (root / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")


def portable_source(module: str) -> str:
    """A module's source with its codeclab imports made relative: each must be one of the exported modules."""
    origin = find_spec(module).origin  # type: ignore[union-attr]  # every MODULES entry exists
    source = Path(str(origin)).read_text(encoding="utf-8")

    def relative(match: re.Match[str]) -> str:
        imported = match.group(1)
        if imported not in MODULES:
            raise PackageError(f"{module} imports {imported}, which the exported package does not carry")
        return f"from .{MODULES[imported].removesuffix('.py')} import"

    portable = _CODECLAB_IMPORT.sub(relative, source)
    left = [n for n in ast.walk(ast.parse(portable)) if isinstance(n, ast.Import | ast.ImportFrom) and _codeclab(n)]
    if left:
        raise PackageError(f"{module} line {left[0].lineno}: a codeclab import the export cannot make relative")
    return portable


def _codeclab(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return not node.level and (node.module or "").split(".")[0] == "codeclab"
    return any(alias.name.split(".")[0] == "codeclab" for alias in node.names)
