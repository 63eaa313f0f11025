"""codeclab: neural video codec experiments with honest rate-distortion figures."""

import os

# torch's OpenMP threads spin briefly when idle, then sleep. libgomp reads this once, when torch loads, so it is set
# here, before any codeclab module can import torch. It changes how idle threads wait, never how work is split (the
# learned codec's bytes are the same, tests/worker/test_learned_exactness.py). libgomp's default spin (300,000)
# lets an idle thread hold the core its partner needs on a busy machine (the learned codec 5-10x slower under
# load); never spinning (OMP_WAIT_POLICY=PASSIVE) costs about a third on a quiet one. 20,000 kept 90% of the quiet
# speed and beat both under load (issue 18, docs/learned-codec.md). An explicit value in the environment wins.
os.environ.setdefault("GOMP_SPINCOUNT", "20000")

__version__ = "0.1.0"
