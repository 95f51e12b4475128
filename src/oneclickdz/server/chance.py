"""The service's randomness: one generator seeded by `--seed`, split into independent streams.

Faults, fulfilment delays, sandbox codes and webhook retry jitter each draw from their own
stream, all derived from the one seed, so replaying a seed replays each sequence even when
requests and fulfilments interleave differently from one run to the next.
"""

from __future__ import annotations

import random
import secrets


class Chance:
    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed if seed is not None else secrets.randbits(63)
        root = random.Random(self.seed)
        self.faults = random.Random(root.getrandbits(64))
        self.delays = random.Random(root.getrandbits(64))
        self.codes = random.Random(root.getrandbits(64))
        self.webhooks = random.Random(root.getrandbits(64))  # retry jitter
