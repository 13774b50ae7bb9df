"""The attack on ids drawn from ``random`` (a Mersenne Twister): 624 consecutive 32-bit
outputs give away its whole state, and so every output to come. An id of 96 random bits
holds three outputs, so 208 ids are enough; the tests check that this predicts nothing."""

from __future__ import annotations

import random

_WORDS = 624


def _untemper(y: int) -> int:
    """The state word behind one 32-bit output (the Twister's tempering, undone)."""
    y ^= y >> 18
    y ^= (y << 15) & 0xEFC60000
    x = y
    for _ in range(5):  # y ^= (y << 7) & mask, undone 7 bits at a time
        x = y ^ ((x << 7) & 0x9D2C5680)
    y = x & 0xFFFFFFFF
    x = y
    for _ in range(3):  # y ^= y >> 11, undone 11 bits at a time
        x = y ^ (x >> 11)
    return x & 0xFFFFFFFF


def predict_next_96(values: list[int]) -> int:
    """The next ``getrandbits(96)`` of the Twister that made ``values`` (>= 208 of them)."""
    words: list[int] = []
    for value in values:  # getrandbits(96) fills its result from the low word up
        words += [(value >> shift) & 0xFFFFFFFF for shift in (0, 32, 64)]
    state = [_untemper(w) for w in words[-_WORDS:]]
    clone = random.Random()
    clone.setstate((3, (*state, _WORDS), None))
    return clone.getrandbits(96)
