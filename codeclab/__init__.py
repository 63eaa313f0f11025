"""codeclab: neural video codec experiments with honest rate-distortion figures."""

import os

# torch's OpenMP threads sleep when idle instead of spinning. libgomp reads this once, when torch loads, so it is
# set here, before any codeclab module can import torch. It changes how idle threads wait, never how work is split
# (the learned codec's bytes are the same, tests/worker/test_learned_exactness.py); a spinning thread on a busy
# machine takes the core its partner needs, which made the learned codec 10-50x slower under load (issue 18).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
