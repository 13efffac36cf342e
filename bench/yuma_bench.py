"""Wall time of one Yuma epoch: 64 staked validators grading n uids (chain layout, n x n)."""

import time

import numpy as np

from services.chain.yuma import YumaParams, bonds_from_u16, bonds_to_u16, compute_yuma, max_upscale_rows_u16

VALIDATORS = 64
SIZES = (256, 1024, 4096)
RUNS = 7


def _subnet(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stored u16 weights (about 30% of uids graded per validator, noisy agreement), stake on the
    first 64 uids, and last epoch's stored bonds."""
    rng = np.random.default_rng(seed)
    weights = np.zeros((n, n))
    quality = rng.random(n)
    graded = rng.random((VALIDATORS, n)) < 0.3
    weights[:VALIDATORS] = graded * np.clip(quality + 0.1 * rng.standard_normal((VALIDATORS, n)), 0, None)
    weights_u16 = max_upscale_rows_u16(weights)
    stake = np.zeros(n)
    stake[:VALIDATORS] = rng.lognormal(10, 1, VALIDATORS)
    first = compute_yuma(weights_u16, stake, None, YumaParams())
    return weights_u16, stake, bonds_from_u16(bonds_to_u16(first.bonds, yuma3=False))


def run() -> dict[str, float]:
    """Median wall milliseconds of compute_yuma per size, Yuma 2 defaults, after one warm-up."""
    out: dict[str, float] = {}
    params = YumaParams()
    for n in SIZES:
        weights, stake, bonds = _subnet(n)
        compute_yuma(weights, stake, bonds, params)
        times = []
        for _ in range(RUNS):
            start = time.perf_counter()
            compute_yuma(weights, stake, bonds, params)
            times.append((time.perf_counter() - start) * 1000)
        out[f"yuma.epoch_ms.{VALIDATORS}x{n}"] = float(np.median(times))
    return out
