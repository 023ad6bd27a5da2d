"""Procedural shape scenes and their prompt grammar: the shapes generator's data (Tier 2 of the quality benchmark).

A scene is one to three identical shapes (circle, square or triangle) of one colour and size, placed in one
region of the image (left, right, top, bottom or center) on a plain background. The prompt always names the
count, colour and shape, and optionally the size, the region and the background, so some prompts pin the
image down much more than others (prompt difficulty varies). The grammar is finite (:func:`all_prompts`).

Attributes are integer labels (indices into the vocabularies below); ``-1`` in a *prompt* means "not
mentioned". Images are float32 ``(B, 3, H, W)`` in [-1, 1], rendered with 4x4 supersampling (anti-aliased).
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (40, 70, 230),
    "yellow": (235, 215, 30),
    "purple": (150, 50, 200),
    "cyan": (40, 205, 215),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (15, 15, 15),
    "gray": (125, 125, 125),
    "white": (240, 240, 240),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COUNTS: tuple[int, ...] = (1, 2, 3)
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "center")

ATTRIBUTES: tuple[str, ...] = ("colour", "shape", "count", "size", "position", "background")
"""Label names, in the column order of :class:`Scenes` arrays."""
OPTIONAL: tuple[str, ...] = ("size", "position", "background")
"""Attributes a prompt may leave out."""
NUM_CLASSES: dict[str, int] = {
    "colour": len(COLOURS),
    "shape": len(SHAPES),
    "count": len(COUNTS),
    "size": len(SIZES),
    "position": len(POSITIONS),
    "background": len(BACKGROUNDS),
}

_COUNT_WORDS = ("a", "two", "three")
_PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles"}
_POSITION_PHRASES = ("on the left", "on the right", "at the top", "at the bottom", "in the center")
_RADIUS = {"small": 0.085, "large": 0.13}  # object radius, fraction of the image side


@dataclass(frozen=True)
class Scenes:
    """A batch of scene descriptions.

    ``labels``: int64 ``(B, 6)``, the true attributes in :data:`ATTRIBUTES` order (count as an index: 0 = one).
    ``mentioned``: bool ``(B, 6)``, which attributes the prompt states (colour, shape, count always).
    """

    labels: np.ndarray
    mentioned: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def prompts(self) -> list[str]:
        """The prompt of every scene, in batch order."""
        return [prompt_of(row, m) for row, m in zip(self.labels, self.mentioned)]

    def column(self, name: str) -> np.ndarray:
        """Labels of one attribute, int64 ``(B,)``."""
        return self.labels[:, _column(name)]


def _column(name: str) -> int:
    if name not in ATTRIBUTES:
        raise ValueError(f"attribute must be one of {ATTRIBUTES}, got {name!r}")
    return ATTRIBUTES.index(name)


def prompt_of(labels: np.ndarray, mentioned: np.ndarray) -> str:
    """The prompt for one scene: ``labels`` (6,) ints, ``mentioned`` (6,) bools (see :class:`Scenes`)."""
    colour, shape, count, size, position, background = (int(v) for v in labels)
    words = [_COUNT_WORDS[count]]
    if mentioned[_column("size")]:
        words.append(SIZES[size])
    words.append(list(COLOURS)[colour])
    words.append(SHAPES[shape] if count == 0 else _PLURAL[SHAPES[shape]])
    text = " ".join(words)
    if mentioned[_column("position")]:
        text += " " + _POSITION_PHRASES[position]
    if mentioned[_column("background")]:
        text += f", {list(BACKGROUNDS)[background]} background"
    return text


def parse_prompt(prompt: str) -> np.ndarray:
    """Attributes a prompt states, int64 ``(6,)`` in :data:`ATTRIBUTES` order, ``-1`` where not mentioned.

    Raises ValueError if ``prompt`` is not in the grammar, in one line: the first word the grammar does not know,
    with the closest words it knows (:func:`difflib.get_close_matches`) or else what it expects there; or the
    first known word out of place and what the grammar expects there (e.g. the plural after ``two``).
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    words = re.findall(r"[^\s,]+|,", prompt)
    unknown = next((i for i, w in enumerate(words) if w not in _VOCABULARY), None)
    try:
        labels = _parse_words(words)
    except _Misfit as misfit:
        what = f"prompt {_shown(prompt)} is not in the shapes grammar"
        if unknown is not None:
            hint = _closest(words[unknown])
            if not hint and misfit.at == unknown:
                hint = f" where the grammar expects {misfit.expected}"
            raise ValueError(f"{what}: unknown word {_shown(words[unknown])}{hint}") from None
        got = repr(words[misfit.at]) if misfit.at < len(words) else "the end of the prompt"
        raise ValueError(f"{what}: expected {misfit.expected}, got {got}") from None
    canonical = prompt_of(np.maximum(labels, 0), labels >= 0)
    if prompt != canonical:  # every word in place, but the spaces or the comma differ
        raise ValueError(f"prompt {_shown(prompt)} is not in the shapes grammar: write it as {canonical!r}")
    return labels


_FUNCTION_WORDS = ("a", "on", "at", "in", "the", ",")
_VOCABULARY: frozenset[str] = frozenset(
    [*_COUNT_WORDS, *SIZES, *COLOURS, *SHAPES, *_PLURAL.values(), *BACKGROUNDS, "background", *_FUNCTION_WORDS]
    + [w for phrase in _POSITION_PHRASES for w in phrase.split()]
)
"""Every word of the grammar (the comma included)."""


class _Misfit(Exception):
    """A prompt's word ``at`` (an index into its words; their number: the end) is not what the grammar
    ``expected`` there."""

    def __init__(self, expected: str, at: int) -> None:
        super().__init__(expected)
        self.expected, self.at = expected, at


def _shown(text: str, limit: int = 80) -> str:
    """``text`` quoted, cut to about ``limit`` characters."""
    return repr(text) if len(text) <= limit else f"{text[:limit - 20]!r}... ({len(text):,} characters)"


def _closest(word: str) -> str:
    """``" (closest known words: ...)"`` for a word the grammar does not know, or ``""`` if none is close."""
    if word.lower() in _VOCABULARY:
        return f" (the grammar is lower case: {word.lower()!r})"
    known = sorted(_VOCABULARY.difference(_FUNCTION_WORDS))
    close = difflib.get_close_matches(word.lower(), known, n=3, cutoff=0.6)
    return f" (closest known words: {', '.join(close)})" if close else ""


def _parse_words(words: list[str]) -> np.ndarray:
    """Labels ``(6,)`` of a prompt's ``words`` in :data:`ATTRIBUTES` order, ``-1`` where not mentioned; a
    :class:`_Misfit` at the first word out of place."""
    labels = np.full(len(ATTRIBUTES), -1, dtype=np.int64)
    at = 0

    def take(options: Sequence[str]) -> int:
        nonlocal at
        if at < len(words) and words[at] in options:
            at += 1
            return list(options).index(words[at - 1])
        return -1

    labels[_column("count")] = count = take(_COUNT_WORDS)
    if count < 0:
        raise _Misfit(f"a count ({', '.join(_COUNT_WORDS)}) first", at)
    labels[_column("size")] = size = take(SIZES)
    labels[_column("colour")] = take(list(COLOURS))
    if labels[_column("colour")] < 0:
        sizes = "" if size >= 0 else f" or a size ({', '.join(SIZES)})"
        raise _Misfit(f"a colour ({', '.join(COLOURS)}){sizes}", at)
    names = SHAPES if count == 0 else tuple(_PLURAL[s] for s in SHAPES)
    labels[_column("shape")] = take(names)
    if labels[_column("shape")] < 0:
        number = "a shape" if count == 0 else f"the plural after {_COUNT_WORDS[count]!r}"
        raise _Misfit(f"{number} ({', '.join(names)})", at)
    for index, phrase in enumerate(p.split() for p in _POSITION_PHRASES):
        if words[at : at + len(phrase)] == phrase:
            labels[_column("position")], at = index, at + len(phrase)
            break
    if labels[_column("position")] < 0 and at < len(words) and words[at] != ",":
        raise _Misfit(f"a position ({', '.join(_POSITION_PHRASES)}), ', BACKGROUND background' or the end", at)
    if take([","]) == 0:
        labels[_column("background")] = take(list(BACKGROUNDS))
        if labels[_column("background")] < 0:
            raise _Misfit(f"a background ({', '.join(BACKGROUNDS)}) after the comma", at)
        if take(["background"]) < 0:
            raise _Misfit("'background'", at)
    if at < len(words):
        raise _Misfit("the end of the prompt", at)
    return labels


def all_prompts() -> list[str]:
    """Every prompt of the grammar, in a fixed order (3,888 prompts)."""
    out = []
    for colour, shape, count in itertools.product(range(len(COLOURS)), range(len(SHAPES)), range(len(COUNTS))):
        for size, position, background in itertools.product(
            range(-1, len(SIZES)), range(-1, len(POSITIONS)), range(-1, len(BACKGROUNDS))
        ):
            labels = np.array([colour, shape, count, max(size, 0), max(position, 0), max(background, 0)])
            mentioned = np.array([True, True, True, size >= 0, position >= 0, background >= 0])
            out.append(prompt_of(labels, mentioned))
    return out


def sample_scenes(rng: np.random.Generator, n: int, p_mention: float = 0.7) -> Scenes:
    """``n`` random scenes; each optional attribute is mentioned in the prompt with probability ``p_mention``.

    Object and background colours always differ (a yellow-on-white scene is allowed; same colour is not possible
    since the vocabularies are disjoint).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 <= p_mention <= 1.0:
        raise ValueError(f"p_mention must be in [0, 1], got {p_mention}")
    labels = np.stack([rng.integers(0, NUM_CLASSES[a], size=n) for a in ATTRIBUTES], axis=1).astype(np.int64)
    mentioned = np.ones((n, len(ATTRIBUTES)), dtype=bool)
    for a in OPTIONAL:
        mentioned[:, _column(a)] = rng.random(n) < p_mention
    return Scenes(labels, mentioned)


def scenes_from_prompts(rng: np.random.Generator, prompts: list[str]) -> Scenes:
    """Scenes matching ``prompts``; attributes a prompt leaves out are drawn at random."""
    stated = np.stack([parse_prompt(p) for p in prompts])
    free = sample_scenes(rng, len(prompts)).labels
    return Scenes(np.where(stated >= 0, stated, free), stated >= 0)


_DIRECTIONS = np.array([(-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0)])  # left, right, top, bottom


def _place(rng: np.random.Generator, count: int, position: int, radius: float) -> np.ndarray:
    """Object centres ``(count, 2)`` (x, y; y grows downwards) for one region, by rejection sampling.

    A side region (left, right, top, bottom) keeps every centre in that half of the image and puts the group's
    centroid at least 0.12 further out along that axis than along the other one; the center region keeps every
    centre in the middle half and the centroid within 0.08 of the middle. The two never overlap, so the position
    label is unambiguous. Centres are at least 2.4 radii apart; if no draw satisfies everything, the draw
    violating least is used.
    """
    for tries in (128, 4096):  # most groups succeed in the first round; crowded ones need more draws
        cand, slack = _draw_centres(rng, count, position, radius, tries)
        ok = np.flatnonzero(slack >= 0)
        if ok.size:
            return cand[ok[0]]
    return cand[int(np.argmax(slack))]


def _draw_centres(
    rng: np.random.Generator, count: int, position: int, radius: float, tries: int
) -> tuple[np.ndarray, np.ndarray]:
    """``tries`` candidate groups ``(tries, count, 2)`` and how far each is inside all constraints ``(tries,)``."""
    m = 1.25 * radius + 0.02
    lo, hi = (0.25, 0.75) if position == 4 else (m, 1.0 - m)
    cand = rng.uniform(lo, hi, (tries, count, 2))
    if position < 4:
        axis, sign = (0, 1)[position // 2], _DIRECTIONS[position][(0, 1)[position // 2]]
        along = sign * (cand[..., axis] - 0.5)  # > 0 on the named side
        cand[..., axis] = 0.5 + sign * np.abs(along)  # fold every centre into the named half
        offset = cand.mean(axis=1) - 0.5
        slack = np.abs(offset[:, axis]) - np.abs(offset[:, 1 - axis]) - 0.12
        slack = np.minimum(slack, (np.abs(cand[..., axis] - 0.5) - 0.02).min(axis=1))
    else:
        slack = 0.08 - np.abs(cand.mean(axis=1) - 0.5).max(axis=1)
    if count > 1:
        d = np.linalg.norm(cand[:, :, None, :] - cand[:, None, :, :], axis=-1)
        d[:, np.arange(count), np.arange(count)] = np.inf
        slack = np.minimum(slack, d.min(axis=(1, 2)) - 2.4 * radius)
    return cand, slack


def _shape_mask(shape: int, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Inside-test for one shape centred at 0 with radius ``r`` (all three have about the same area)."""
    if shape == 0:  # circle
        return dx**2 + dy**2 <= r**2
    if shape == 1:  # axis-aligned square
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.87 * r
    h, b = 1.05 * r, 1.3 * r  # upward triangle: half-height h, half-base b
    return (np.abs(dy) <= h) & (np.abs(dx) <= b * (dy + h) / (2 * h))


def render(scenes: Scenes, rng: np.random.Generator, resolution: int = 24, supersample: int = 4) -> np.ndarray:
    """Images of ``scenes``, float32 ``(B, 3, resolution, resolution)`` in [-1, 1] (placement drawn from ``rng``)."""
    if resolution < 8:
        raise ValueError(f"resolution must be >= 8 pixels, got {resolution}")
    s = resolution * supersample
    u = (np.arange(s) + 0.5) / s
    xx, yy = np.meshgrid(u, u, indexing="xy")
    colours = np.array(list(COLOURS.values()), dtype=np.float32) / 127.5 - 1.0
    backs = np.array(list(BACKGROUNDS.values()), dtype=np.float32) / 127.5 - 1.0
    out = np.empty((len(scenes), 3, resolution, resolution), dtype=np.float32)
    for k, (colour, shape, count, size, position, background) in enumerate(scenes.labels):
        r = _RADIUS[SIZES[size]]
        mask = np.zeros((s, s), dtype=bool)
        for cx, cy in _place(rng, int(count) + 1, int(position), r):
            mask |= _shape_mask(int(shape), xx - cx, yy - cy, r)
        cover = mask.reshape(resolution, supersample, resolution, supersample).mean(axis=(1, 3), dtype=np.float32)
        out[k] = cover * colours[colour][:, None, None] + (1.0 - cover) * backs[background][:, None, None]
    return out
