"""A package's weights against its manifest: every listed file present with its sha256, and no checkpoint unlisted."""

from __future__ import annotations

from pathlib import Path

from codeclab.experiments.codec_package import CodecManifest
from codeclab.worker.hashing import sha256_file
from codeclab.worker.packages.manifest import PackageError

# Files that hold weights: a .safetensors file must be listed in codec.json; the others are pickle-based or
# unchecked formats, which a package may not carry at all.
SAFETENSORS_SUFFIX = ".safetensors"
REFUSED_WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle", ".npy", ".npz", ".h5", ".onnx")


def verify_weights(root: Path, manifest: CodecManifest, files: list[str]) -> None:
    """Refuse a tampered, missing, unlisted or pickle-format weights file; `files` are the package's relative paths."""
    for name in files:
        if name.lower().endswith(REFUSED_WEIGHT_SUFFIXES):
            raise PackageError(
                f"codec package {manifest.name}: {name}: weights must be .safetensors (never pickle); "
                "convert it with safetensors.torch.save_file and list it under weights in codec.json"
            )
        if name.endswith(SAFETENSORS_SUFFIX) and name not in manifest.weights:
            raise PackageError(
                f"codec package {manifest.name}: {name} is not listed under weights in codec.json; "
                f'add "{name}": "<sha256>" (codeclab codec check prints it) or remove the file'
            )
    present = set(files)
    for name, expected in sorted(manifest.weights.items()):
        if name not in present:
            raise PackageError(
                f"codec package {manifest.name}: weights file {name} is listed in codec.json but "
                "missing from the package; add it or remove it from weights"
            )
        actual = sha256_file(root / name)
        if actual != expected:
            raise PackageError(
                f"codec package {manifest.name}: weights file {name} does not match codec.json: its sha256 is "
                f"{actual}, codec.json says {expected}. The file was changed (or corrupted) after it was listed; "
                "nothing ran. Restore the file, or list its new hash if you changed it on purpose"
            )
