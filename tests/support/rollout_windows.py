"""Simulated evaluation windows of one rollout, for the judge's statistical tests.

Weights rise from 10% to 80% two windows a step, three times over; each window holds Poisson(400)
requests split by the weight, with binomial bad events at p0 on the stable and ratio x p0 on the canary.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

WEIGHTS = (0.1, 0.1, 0.2, 0.2, 0.4, 0.4, 0.6, 0.6, 0.8, 0.8) * 3
REQUESTS_PER_WINDOW = 400


def rollout_windows(
    rng: np.random.Generator, *, ratio: float, p0: float
) -> Iterator[tuple[float, float, float, float]]:
    """(canary requests, canary bad, stable requests, stable bad) per window, drawn from ``rng``."""
    for weight in WEIGHTS:
        total = rng.poisson(REQUESTS_PER_WINDOW)
        n_c = float(rng.binomial(total, weight))
        n_s = total - n_c
        x_c = float(rng.binomial(int(n_c), min(ratio * p0, 1)))
        x_s = float(rng.binomial(int(n_s), p0))
        yield n_c, x_c, n_s, x_s
