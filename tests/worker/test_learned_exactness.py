"""The learned codec writes the same streams and decodes the same pixels as when its shipped weights landed."""

from __future__ import annotations

import json

import pytest

from .learned_reference import REFERENCE, all_hashes


@pytest.mark.slow
def test_streams_and_reconstructions_are_byte_identical_to_the_reference_on_both_eval_clips() -> None:
    want = json.loads(REFERENCE.read_text())
    got = all_hashes()
    assert got.keys() == want.keys()
    changed = [key for key in want if got[key] != want[key]]
    assert not changed, f"changed since {REFERENCE.name} was written: {changed}"
