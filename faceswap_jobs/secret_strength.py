"""How many bits a secret is worth, estimated from the secret alone, and why a weak one is weak.

The estimate is the length of a simple description of the text: a greedy LZ77 parse in which
each step is the cheaper of

- a *literal*: one character, costed at the Shannon entropy of the text's own character
  distribution (bits per character), or
- a *copy* of at least `MIN_COPY_CHARS` characters from the last `WINDOW_CHARS`: costed at the
  bits needed to name where it starts and how long it is,
  `log2(min(position, WINDOW_CHARS)) + log2(characters left)`.

Without copies this is the plug-in Shannon estimate, entropy per character times length, which
already refuses small alphabets (`'a' * 64` is 0 bits). The copies refuse what Shannon alone
accepts: repetition (`'password' * 8` is 176 "Shannon bits" but ≈ 31 here; `'0123456789' * 4`
≈ 41). For random text the plug-in entropy per character undercounts (a 43-character sample of
64 symbols shows about 31 of them), so the estimate errs on the safe side. Over 100,000 draws
each, `token_urlsafe(32)` (256 real bits) scored 181-229 (median 209) and `token_hex(32)` 214-255
(median 244): none near 128. `token_urlsafe(24)` (192 real bits, 32 characters) scored 119-160,
21 below 128: use 32 bytes.

It does not know dictionaries: a long English sentence scores well. The refusal message says
how to make a random secret instead, and that is what the docs tell people to use.
"""

from __future__ import annotations

import math
from collections import Counter

WINDOW_CHARS = 256
"""How far back a copy may start: like LZ77's window, it keeps the parse O(length * window)."""
MIN_COPY_CHARS = 3
"""Shorter repeats are left to chance: in 64 random hex characters a repeated pair is routine."""
GENERATE_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def bits_per_char(text: str) -> float:
    """Shannon entropy of the text's character distribution, in bits per character."""
    if not text:
        return 0.0
    n = len(text)
    return sum(c / n * math.log2(n / c) for c in Counter(text).values())


def _longest_copy(text: str, at: int) -> tuple[int, int]:
    """(length, start) of the longest earlier match for text[at:], overlapping allowed."""
    best_len, best_start = 0, 0
    for start in range(max(0, at - WINDOW_CHARS), at):
        length = 0
        while at + length < len(text) and text[start + length] == text[at + length]:
            length += 1
        if length > best_len:
            best_len, best_start = length, start
    return best_len, best_start


def estimated_bits(text: str) -> float:
    """Bits of the description above: a conservative estimate of the text's entropy."""
    literal_bits = bits_per_char(text)
    bits, at = 0.0, 0
    while at < len(text):
        length, _ = _longest_copy(text, at)
        if length >= MIN_COPY_CHARS:
            copy_bits = math.log2(min(at, WINDOW_CHARS)) + math.log2(len(text) - at)
            if copy_bits < length * literal_bits:
                bits += copy_bits
                at += length
                continue
        bits += literal_bits
        at += 1
    return bits


def weakness(text: str, *, min_chars: int, min_bits: float) -> str | None:
    """Why `text` is too weak, or None. The reason gives counts only, never the text."""
    if len(text) < min_chars:
        return f"too short ({len(text)} < {min_chars} characters)"
    bits = estimated_bits(text)
    if bits < min_bits:
        return f"too predictable (~{bits:.0f} bits of entropy, need {min_bits:.0f})"
    return None
