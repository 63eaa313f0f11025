"""`ctx`, what a codec package's encode() and decode() get from the sandboxed child.

- `ctx.device`: "cpu", or "cuda" when the package asked for it and this host has it;
- `ctx.fps`: the clip's frame rate as the decoder's header gives it ("25", "30000/1001"), for a
  container that records it;
- `ctx.weights(name)`: the tensors of one weights file the manifest lists, loaded with safetensors
  (never pickle) onto `ctx.device`;
- `ctx.weights_metadata(name)`: that file's safetensors metadata (str -> str), where a checkpoint
  keeps its configuration;
- `ctx.weights_sha256(name)`: its sha256 as codec.json lists it (checked before the child started),
  for a stream to name the weights it needs;
- `ctx.progress(frames_done)`: a PROGRESS frame to the worker, which feeds its stall watchdog and
  progress bar. Only a count above the last one sent is sent; the worker refuses any other.

It runs in the child, under every layer: the package folder is all it reads besides the libraries.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from codeclab.worker.sandbox.protocol import PROGRESS_BODY, Kind, PackageRequest, PublicHeader, send


class CodecContext:
    def __init__(self, package: PackageRequest, header: PublicHeader, result_fd: int) -> None:
        self.device = package.device
        self.fps = header.fps
        self.frames_total = header.frames
        self._root = Path(package.root)
        self._weights = dict(package.weights)
        self._fd = result_fd
        self._sent = 0
        self._lock = threading.Lock()  # a frame is two writes: threads must not interleave them

    def weights(self, name: str) -> dict[str, Any]:
        """The tensors in weights file `name`, one the package's codec.json lists."""
        from safetensors.torch import load_file  # preloaded under the layers by the worker's request

        return load_file(str(self._path(name)), device=self.device)

    def weights_metadata(self, name: str) -> dict[str, str]:
        """The metadata in weights file `name`'s safetensors header (empty when it has none)."""
        from safetensors import safe_open

        with safe_open(str(self._path(name)), framework="pt") as fh:
            return dict(fh.metadata() or {})

    def weights_sha256(self, name: str) -> str:
        """The sha256 (hex) of weights file `name`, as codec.json lists it and the worker checked it."""
        self._path(name)
        return self._weights[name]

    def _path(self, name: str) -> Path:
        if name not in self._weights:
            listed = ", ".join(sorted(self._weights)) or "none"
            raise KeyError(f"ctx.weights({name!r}): codec.json lists no such weights file (it lists: {listed})")
        return self._root / name

    def progress(self, frames_done: int) -> None:
        """Report `frames_done` of `frames_total`; the worker's stall watchdog counts each increase."""
        if not isinstance(frames_done, int) or isinstance(frames_done, bool):
            raise TypeError(f"ctx.progress() takes the number of frames done, not {type(frames_done).__name__}")
        if not 0 <= frames_done <= self.frames_total:
            raise ValueError(f"ctx.progress({frames_done}): frames done must be between 0 and {self.frames_total}")
        with self._lock:
            if frames_done > self._sent:
                send(self._fd, Kind.PROGRESS, PROGRESS_BODY.pack(frames_done))
                self._sent = frames_done
