"""Validation of the clip oracle itself, as `validate` does for images: it must pass true
clips, survive mild degradation of every frame, fail noise and wrong prompts, and fail the
ways video generators go wrong in the figure they concern:

  frozen       the first frame repeated: nothing moves (motion fails; flicker is exactly 1)
  reversed     time runs backwards: directions, spins, growth, colour changes and appearances
               invert (a bounce reversed is still a bounce off the same edge, so it passes)
  shuffled     frames in random order: paths are no longer one-way (motion and flicker suffer)
  redrawn      every frame an independent draw of the prompt: the subject jumps and changes
               (motion, flicker and subject consistency suffer)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np

from atelier.evaluate.clips import ClipResult, sample_seed, score_prompt, summarise, truth_clips
from atelier.evaluate.validate import _shuffled, blur, jpeg, noise
from atelier.world.clips.evalset import CATEGORIES, ClipPrompt
from atelier.world.clips.motion import frame_scene
from atelier.world.clips.staging import realize_clip
from atelier.world.images.render import render

# Per-frame degradations: the image oracle's, with fresh noise in every frame.
FRAME_DEGRADATIONS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "blur": lambda image, t: blur(image),
    "noise": lambda image, t: noise(image, seed=t),
    "jpeg": lambda image, t: jpeg(image),
    "blur+noise+jpeg": lambda image, t: jpeg(noise(blur(image), seed=t)),
}
# Reported, not held to the bar (see atelier.evaluate.validate).
HARSH_FRAME_DEGRADATIONS = {"jpeg 4:2:0": lambda image, t: jpeg(image, subsampling=2)}


def _frozen(clip: np.ndarray, rng: random.Random) -> np.ndarray:
    return np.repeat(clip[:1], len(clip), axis=0)


def _reversed(clip: np.ndarray, rng: random.Random) -> np.ndarray:
    return clip[::-1].copy()


def _shuffled_in_time(clip: np.ndarray, rng: random.Random) -> np.ndarray:
    order = list(range(len(clip)))
    while order == sorted(order):
        rng.shuffle(order)
    return clip[order]


TIME_FAILURES: dict[str, Callable[[np.ndarray, random.Random], np.ndarray]] = {
    "frozen": _frozen, "reversed": _reversed, "frames shuffled": _shuffled_in_time,
}


def redrawn_clip(case: ClipPrompt, k: int, size: int) -> np.ndarray:
    """Frame t taken from its own independent draw of the prompt, for every t."""
    frames = []
    for t in range(case.frames):
        clip = realize_clip(case.query, random.Random(sample_seed(case, k) * 1000 + 1 + t), size=size,
                            frames=case.frames)
        frames.append(render(frame_scene(clip, t)))
    return np.stack(frames)


def validate(cases: Sequence[ClipPrompt], per_case: int = 4, size: int = 64,
             progress: Callable[[str], None] | None = None) -> dict:
    """The validation table: one row per condition, with its summary."""
    rows: dict[str, dict] = {}
    truth = {c.id: truth_clips(c, per_case, size) for c in cases}

    def record(name: str, results: list[ClipResult]) -> None:
        rows[name] = summarise(results)
        if progress:
            row = rows[name]
            progress(f"{name}: overall {row['overall']:.3f}, flicker {row['flicker']:.3f}, "
                     f"consistency {row['subject_consistency']:.3f}")

    def score(clips: dict[str, list[np.ndarray]], against: dict | None = None) -> list[ClipResult]:
        if against is None:
            return [score_prompt(c, clips[c.id]) for c in cases]
        return [score_prompt(against[c.id], clips[c.id]) for c in cases if c.id in against]

    record("truth", score(truth))
    for name, degrade in {**FRAME_DEGRADATIONS, **HARSH_FRAME_DEGRADATIONS}.items():
        record(name, score({cid: [np.stack([degrade(f, t) for t, f in enumerate(clip)]) for clip in clips]
                            for cid, clips in truth.items()}))
    rng = np.random.default_rng(0)
    record("uniform noise", score({cid: [rng.integers(0, 256, clip.shape, dtype=np.uint8) for clip in clips]
                                   for cid, clips in truth.items()}))
    record("shuffled prompts", score(truth, against=_shuffled(cases, categories=CATEGORIES)))
    for name, fail in TIME_FAILURES.items():
        record(name, score({cid: [fail(clip, random.Random(int(cid) * 100 + k)) for k, clip in enumerate(clips)]
                            for cid, clips in truth.items()}))
    record("redrawn", score({c.id: [redrawn_clip(c, k, size) for k in range(per_case)] for c in cases}))
    return {"per_case": per_case, "size": size, "cases": len(cases), "conditions": rows}


def format_validation(table: dict) -> str:
    names = [c for c in CATEGORIES if any(c in row["categories"] for row in table["conditions"].values())]
    head = f"{'condition':<17}{'overall':>8}" + "".join(f"{c[:9]:>10}" for c in names) + \
        f"{'frames':>8}{'motion':>8}{'flicker':>8}{'consist':>8}"
    lines = [head]
    for name, row in table["conditions"].items():
        cells = "".join(f"{row['categories'][c]['score']:>10.3f}" if c in row["categories"] else f"{'-':>10}"
                        for c in names)
        lines.append(f"{name:<17}{row['overall']:>8.3f}{cells}{row['frame_adherence']:>8.3f}{row['motion']:>8.3f}"
                     f"{row['flicker']:>8.3f}{row['subject_consistency']:>8.3f}")
    lines.append(f"({table['cases']} cases x {table['per_case']} clips, {table['size']} px; frames = share of "
                 f"frames showing the static part, motion = share of clips whose motion passes)")
    return "\n".join(lines)
