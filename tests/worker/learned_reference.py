"""The learned codec's streams and reconstructions on its evaluation clips, as sha256 hashes.

`learned_reference.json` holds these hashes as the CLN2 codec with the shipped weights wrote them
(issue 19), made by

    PYTHONPATH=$PWD .venv/bin/python -m tests.worker.learned_reference --write

`test_learned_exactness.py` recomputes them with today's code: a faster codec must write the
same bytes and decode the same pixels. Each clip's first 9 frames (an I-frame and 8 P-frames)
at three of the six qualities keep it to seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

from codeclab.training.data import EVAL_SOURCES, limited
from codeclab.worker.codecs import StreamHeader, make_codec
from codeclab.worker.sources import load_reference
from codeclab.worker.video import Video, read_y4m

REFERENCE = Path(__file__).with_suffix(".json")
LABELS = ("bbb 448x256", "carphone 176x144")
CLIPS = dict(zip(LABELS, limited(EVAL_SOURCES, 9), strict=True))
QUALITIES = (1, 4, 6)
PARAMS = {"device": "cpu", "threads": 2}  # the schema's default threads, pinned: float sums depend on them


def _ignore(_count: int) -> None:
    pass


def video_sha256(video: Video) -> str:
    digest = hashlib.sha256()
    for plane in (video.y, video.u, video.v):
        digest.update(plane.tobytes())
    return digest.hexdigest()


def clip_hashes(label: str, workdir: Path) -> dict[str, str]:
    """`<clip>` -> the reference's hash, `<clip> q<Q>` -> the stream's and the decoded video's hashes."""
    clip_dir = workdir / label.split()[0]
    clip_dir.mkdir()
    y4m = load_reference(CLIPS[label], clip_dir).video.path  # the reference, written frame by frame
    reference = read_y4m(y4m)
    hashes = {f"{label} reference": video_sha256(reference)}
    for quality in QUALITIES:
        codec = make_codec("learned", {**PARAMS, "quality": quality})
        stream = clip_dir / f"q{quality}.cln"
        codec.encode(y4m, stream, _ignore)
        decoded = codec.decode(stream, StreamHeader.of(reference), _ignore)
        hashes[f"{label} q{quality} stream"] = hashlib.sha256(stream.read_bytes()).hexdigest()
        hashes[f"{label} q{quality} decoded"] = video_sha256(decoded)
    return hashes


def all_hashes() -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="codeclab-learned-ref-") as tmp:
        return {key: value for label in CLIPS for key, value in clip_hashes(label, Path(tmp)).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {REFERENCE.name} (else print the hashes)")
    args = parser.parse_args()
    hashes = all_hashes()
    text = json.dumps(hashes, indent=2) + "\n"
    if args.write:
        REFERENCE.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
