"""Deterministic nuScenes-style tokens (32 hex characters)."""

import numpy as np


class TokenFactory:
    """Callable that returns a new token each call, reproducible from ``seed``."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def __call__(self) -> str:
        return self._rng.bytes(16).hex()
