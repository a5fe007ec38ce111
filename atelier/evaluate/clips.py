"""The clip suite: score generated clips against the clip evaluation set from pixels alone.

Each frame is read by the image oracle (`detect.read`; for prompts that rotate, shapes are
read at any angle by `orientation.fit_turned`). A clip is correct when
  - per-frame adherence passes: at least FRAME_PASS of its frames show the prompt's static part
    (a subject that appears may be absent; a recolouring subject may be either colour), and
  - motion adherence passes: the subject, tracked from frame to frame, does what the motion
    asks (ClipQuery.motion_failures: direction within its 45-degree sector and far enough,
    straight and one-way for moves, out to the edge and back for bounces, a turn in the right
    sense for rotations, a steady change of diameter, start and end colours, absent then present).
Scores per category are shares of correct clips; overall is the mean of the categories, with
bootstrap intervals over prompts (`suite.score_rows`, `suite.mean_of_groups`).

Two quality figures are reported beside adherence, never gating it:
  - temporal flicker, VBench's temporal_flickering (Huang et al. 2024, "VBench"): the mean
    absolute difference of consecutive frames in 0..255, as (255 - MAE) / 255; 1 is a still clip.
  - subject consistency. VBench takes the cosine similarity of DINO features of each frame to
    the first and to the previous frame. With no DINO here, the feature is the oracle's own
    reading of the subject: one-hot shape, colour and texture (its identity), and its crop
    with the fitted background subtracted, resampled to CROP_SIDE^2 so that position and size do
    not count (its appearance), each block of unit norm. A frame where the subject is not
    found scores 0. Frames before a subject appears are left out.

Folder layout, one folder per prompt id of atelier/world/data/eval_clips.jsonl:

    DIR/0000/0/000.png ... DIR/0000/0/015.png   (lossless PNG frames), or
    DIR/0000/0.gif                               (all frames in one GIF)
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atelier.evaluate.background import BackgroundReading, read_background
from atelier.evaluate.detect import read, read_objects, to_float
from atelier.evaluate.orientation import fit_turned
from atelier.evaluate.suite import load_image, mean_of_groups, samples_present, score_rows
from atelier.world import vocab
from atelier.world.clips.evalset import CATEGORIES, ClipPrompt
from atelier.world.clips.evalset import load as load_cases
from atelier.world.clips.motion import render_clip
from atelier.world.clips.query import ClipQuery, FrameView, track_subject
from atelier.world.clips.staging import realize_clip

FRAME_PASS = 0.85  # share of frames that must show the static part
CROP_SIDE = 12
FRAME_NAME = re.compile(r"^(\d{3})\.png$", re.IGNORECASE)

__all__ = ["load_cases", "write_truth", "score_folder", "summarise", "format_table", "report", "validate",
           "format_validation", "score_clip", "read_clip", "temporal_flicker", "subject_consistency"]


@dataclass(frozen=True)
class Sighting:
    """An object as the oracle reads it in one frame (atelier.world.clips.query.Sighting)."""

    shape: str | None
    colour: str | None
    size: str | None
    texture: str | None
    region: int
    centre: tuple[float, float]
    diameter: float
    angle: float | None
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class ClipVerdict:
    correct: bool
    frame_adherence: float  # share of frames showing the static part
    motion_ok: bool
    flicker: float
    subject_consistency: float
    failures: tuple[str, ...]


@dataclass(frozen=True)
class ClipResult:
    prompt: ClipPrompt
    verdicts: tuple[ClipVerdict, ...]  # one per sample

    @property
    def correct(self) -> tuple[bool, ...]:
        return tuple(v.correct for v in self.verdicts)

    @property
    def score(self) -> float:
        return float(np.mean(self.correct)) if self.verdicts else 0.0


def _frame_view(frame: np.ndarray, turned: bool) -> FrameView:
    """One frame read: its sightings, and its background reading (whose model crops use)."""
    if not turned:
        reading = read(frame)
        return [Sighting(d.shape, d.colour, d.size, d.texture, d.region, d.centre, d.diameter, None, d.box)
                for d in reading.objects], reading.background
    pixels = to_float(frame)
    background = read_background(pixels)
    if background is None:
        return [], None
    alphas: list[list[np.ndarray]] = []
    detections = read_objects(pixels, background, alphas)
    sightings = []
    for d, estimates in zip(detections, alphas):
        fit = fit_turned(estimates)
        diameter = fit.diameter / pixels.shape[1]
        sightings.append(Sighting(fit.shape, d.colour, vocab.size_name(diameter), d.texture, d.region, d.centre,
                                  diameter, fit.angle if fit.shape else None, d.box))
    return sightings, background


def read_clip(frames: Sequence[np.ndarray], query: ClipQuery) -> list[FrameView]:
    """Every frame read (identical frames once), turned shapes read when the query rotates."""
    turned = any(m.kind == "rotate" for m in query.motions)
    cache: dict[bytes, FrameView] = {}
    views = []
    for frame in frames:
        array = np.ascontiguousarray(frame)
        key = hashlib.sha1(array.tobytes() + str(array.dtype).encode()).digest()
        if key not in cache:
            cache[key] = _frame_view(array, turned)
        views.append(cache[key])
    return views


def temporal_flicker(frames: Sequence[np.ndarray]) -> float:
    """VBench's temporal_flickering score: (255 - mean over consecutive pairs of the mean absolute
    difference, in 0..255) / 255. Frames as uint8 or float in 0..1."""
    stack = np.stack([np.asarray(f) for f in frames]).astype(np.float64)
    if not np.issubdtype(np.asarray(frames[0]).dtype, np.integer):
        stack = stack * 255.0
    if len(stack) < 2:
        raise ValueError("temporal flicker needs at least two frames")
    mae = np.abs(np.diff(stack, axis=0)).mean(axis=tuple(range(1, stack.ndim)))
    return float((255.0 - mae.mean()) / 255.0)


def _descriptor(frame: np.ndarray, sighting: Sighting, background: BackgroundReading | None) -> np.ndarray:
    """Identity (one-hot shape, colour, texture) and appearance (background-subtracted crop,
    resampled to CROP_SIDE^2), each of unit norm."""
    from scipy.ndimage import map_coordinates

    identity = np.zeros(len(vocab.SHAPES) + len(vocab.COLOUR_NAMES) + len(vocab.TEXTURES))
    for offset, table, value in ((0, vocab.SHAPES, sighting.shape),
                                 (len(vocab.SHAPES), vocab.COLOUR_NAMES, sighting.colour),
                                 (len(vocab.SHAPES) + len(vocab.COLOUR_NAMES), vocab.TEXTURES, sighting.texture)):
        if value in table:
            identity[offset + table.index(value)] = 1.0
    pixels = to_float(frame)
    difference = pixels - background.model if background is not None else pixels
    x0, y0, x1, y1 = sighting.box
    side = max(x1 - x0, y1 - y0) + 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    grid = (np.arange(CROP_SIDE) + 0.5) / CROP_SIDE * side - side / 2
    ys, xs = np.meshgrid(cy + grid - 0.5, cx + grid - 0.5, indexing="ij")
    crop = np.stack([map_coordinates(difference[..., c], [ys, xs], order=1, cval=0.0) for c in range(3)], -1)
    crop = crop.ravel()
    norms = [np.linalg.norm(identity), np.linalg.norm(crop)]
    return np.concatenate([identity / max(norms[0], 1e-9), crop / max(norms[1], 1e-9)]) / np.sqrt(2)


def subject_consistency(frames: Sequence[np.ndarray], views: Sequence[FrameView], query: ClipQuery) -> float:
    """VBench's subject consistency on the oracle's reading of the first motion's subject:
    the mean over frames t >= 1 of (cos(f_t, f_first) + cos(f_t, f_{t-1})) / 2, with a frame
    whose subject is unseen scoring 0; an appearing subject's frames count from its first sighting."""
    group = query.scene.objects[query.motions[0].subject]
    track = track_subject(views, group)
    seen = [t for t, s in enumerate(track) if s is not None]
    if not seen:
        return 0.0
    start = seen[0] if query.motions[0].kind == "appear" else 0
    features = [None if s is None else _descriptor(frames[t], s, views[t][1]) for t, s in enumerate(track)]
    scores = []
    for t in range(start + 1, len(frames)):
        first, previous, current = features[start], features[t - 1], features[t]
        if current is None:
            scores.append(0.0)
            continue
        pair = [float(current @ other) if other is not None else 0.0 for other in (first, previous)]
        scores.append(max(0.0, sum(pair) / 2))
    return float(np.mean(scores)) if scores else 1.0


def score_clip(frames: Sequence[np.ndarray], prompt: ClipPrompt) -> ClipVerdict:
    """Whether a clip (frames as uint8 or float arrays) satisfies its prompt, and its quality figures."""
    if len(frames) != prompt.frames:
        raise ValueError(f"prompt {prompt.id} asks for {prompt.frames} frames, got {len(frames)}")
    if len({np.shape(f) for f in frames}) != 1:
        raise ValueError(f"the frames of a clip must share one size, got {sorted({np.shape(f) for f in frames})}")
    query = prompt.query
    views = read_clip(frames, query)
    share = query.frame_share(views)
    motion = query.motion_failures(views)
    failures = list(motion)
    if share < FRAME_PASS:
        worst = next(f for f in (query.frame_failures(*v) for v in views) if f)
        failures.insert(0, f"{share:.0%} of frames show the prompt (at least {FRAME_PASS:.0%}): {worst[0]}")
    return ClipVerdict(correct=share >= FRAME_PASS and not motion, frame_adherence=share, motion_ok=not motion,
                       flicker=temporal_flicker(frames),
                       subject_consistency=subject_consistency(frames, views, query),
                       failures=tuple(failures))


def score_prompt(prompt: ClipPrompt, clips: Sequence[Sequence[np.ndarray]]) -> ClipResult:
    return ClipResult(prompt=prompt, verdicts=tuple(score_clip(clip, prompt) for clip in clips))


def summarise(results: Sequence[ClipResult]) -> dict:
    """Scores per category and overall with 95% bootstrap intervals (as the image suite's), plus the
    mean flicker, subject consistency, per-frame adherence and motion pass rate, overall and
    per category."""
    rng = np.random.default_rng(0)
    groups = {c: np.array([r.score for r in results if r.prompt.category == c]) for c in CATEGORIES}
    groups = {c: scores for c, scores in groups.items() if len(scores)}
    overall, overall_ci95 = mean_of_groups(groups, rng)
    summary = {"overall": overall, "overall_ci95": overall_ci95, "categories": score_rows(groups, rng),
               "clips": int(sum(len(r.verdicts) for r in results))}

    def means(verdicts: list[ClipVerdict]) -> dict:
        if not verdicts:
            return {"flicker": float("nan"), "subject_consistency": float("nan"), "frame_adherence": float("nan"),
                    "motion": float("nan")}
        return {"flicker": float(np.mean([v.flicker for v in verdicts])),
                "subject_consistency": float(np.mean([v.subject_consistency for v in verdicts])),
                "frame_adherence": float(np.mean([v.frame_adherence for v in verdicts])),
                "motion": float(np.mean([v.motion_ok for v in verdicts]))}

    for name, row in summary["categories"].items():
        row.update(means([v for r in results if r.prompt.category == name for v in r.verdicts]))
    summary.update(means([v for r in results for v in r.verdicts]))
    return summary


def report(results: Sequence[ClipResult], **extra) -> dict:
    """The JSON report: the summary plus every prompt's per-clip verdicts."""
    return {
        **extra,
        **summarise(results),
        "prompts": [
            {"id": r.prompt.id, "category": r.prompt.category, "text": r.prompt.text,
             "correct": list(r.correct), "frame_adherence": [round(v.frame_adherence, 4) for v in r.verdicts],
             "flicker": [round(v.flicker, 4) for v in r.verdicts],
             "subject_consistency": [round(v.subject_consistency, 4) for v in r.verdicts],
             "failures": [list(v.failures) for v in r.verdicts]}
            for r in results
        ],
    }


def format_table(summary: dict) -> str:
    header = f"{'category':<16}{'score':>7}   {'95% CI':<16}{'frames':>7}{'motion':>7}{'flicker':>8}{'consist':>8}" \
             f"{'prompts':>8}"
    lines = [header]
    for name, row in summary["categories"].items():
        low, high = row["ci95"]
        lines.append(f"{name:<16}{row['score']:>7.3f}   [{low:.3f}, {high:.3f}] {row['frame_adherence']:>7.3f}"
                     f"{row['motion']:>7.3f}{row['flicker']:>8.3f}{row['subject_consistency']:>8.3f}"
                     f"{row['prompts']:>8}")
    low, high = summary["overall_ci95"]
    lines.append("-" * len(header))
    lines.append(f"{'overall':<16}{summary['overall']:>7.3f}   [{low:.3f}, {high:.3f}] "
                 f"{summary['frame_adherence']:>7.3f}{summary['motion']:>7.3f}{summary['flicker']:>8.3f}{summary['subject_consistency']:>8.3f}"
                 f"   clips {summary['clips']}")
    return "\n".join(lines)


# Folders of samples.

def _sample_entries(folder: Path, prompt: ClipPrompt) -> list[Path]:
    """A prompt's samples in order of k: folders DIR/<id>/<k>/ and files DIR/<id>/<k>.gif. One
    k given both ways is refused, and so is a gap in the numbering."""
    directory = folder / prompt.id
    if not directory.is_dir():
        return []
    entries = {}
    for path in directory.iterdir():
        if path.is_dir():
            stem = path.name
        elif path.is_file() and path.suffix.lower() == ".gif":
            stem = path.stem
        else:
            continue
        if not stem.isdigit():
            continue
        if stem in entries:
            raise ValueError(f"{directory}: sample {stem} is given twice ({entries[stem].name} and {path.name})")
        entries[stem] = path
    order = sorted(entries, key=int)
    if [int(k) for k in order] != list(range(len(order))):
        raise ValueError(f"{directory}: samples must be numbered 0, 1, 2 ... without gaps, found {', '.join(order)}")
    return [entries[k] for k in order]


def load_clip(path: Path, frames: int) -> list[np.ndarray]:
    """A sample's frames as float RGB arrays: a folder of 000.png ... or one GIF; a clear error
    naming the file for anything else, or for a count other than `frames`."""
    if path.is_dir():
        names = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
        bad = [n for n in names if not FRAME_NAME.match(n)]
        if bad:
            raise ValueError(f"{path}: frames must be lossless PNGs named 000.png, 001.png ...; "
                             f"found {', '.join(bad[:3])}")
        numbers = [int(FRAME_NAME.match(n).group(1)) for n in names]
        if numbers != list(range(len(numbers))):
            raise ValueError(f"{path}: frames must be numbered 000 to {len(numbers) - 1:03d} without gaps")
        images = [load_image(path / n) for n in names]
    else:
        images = _load_gif(path, frames)
    if len(images) != frames:
        raise ValueError(f"{path}: {len(images)} frames, the prompt asks for {frames}")
    if len({image.shape for image in images}) != 1:
        raise ValueError(f"{path}: frames of different sizes ({sorted({image.shape[:2] for image in images})})")
    return images


def _load_gif(path: Path, frames: int) -> list[np.ndarray]:
    """A GIF's frames. Encoders (Pillow among them) merge identical consecutive frames into one
    that lasts longer; at a constant frame rate, durations give the count back."""
    from PIL import Image, ImageSequence

    try:
        with Image.open(path) as gif:
            if gif.format != "GIF":
                raise ValueError(f"a {gif.format} file, not a GIF")
            images, durations = [], []
            for frame in ImageSequence.Iterator(gif):
                images.append(to_float(frame.convert("RGB")))
                durations.append(frame.info.get("duration") or 0)
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: not a readable GIF ({error})") from error
    if len(images) < frames and all(durations):
        step = sum(durations) / frames
        repeats = [round(d / step) for d in durations]
        if sum(repeats) == frames and min(repeats) >= 1:
            images = [image for image, n in zip(images, repeats) for _ in range(n)]
    return images


def score_folder(folder: Path, cases: Sequence[ClipPrompt], partial: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> list[ClipResult]:
    """Score DIR/<case id>/<k>/<frame>.png or DIR/<case id>/<k>.gif. Missing cases are an error
    unless `partial`, so a full-suite score is never quietly computed on part of the suite."""
    chosen = samples_present(folder, cases, _sample_entries, "DIR/<case id>/<k>/000.png ... or DIR/<case id>/<k>.gif",
                             partial, noun="cases")
    results = []
    for done, (case, entries) in enumerate(chosen, start=1):
        results.append(score_prompt(case, [load_clip(path, case.frames) for path in entries]))
        if progress:
            progress(done, len(chosen))
    return results


def sample_seed(case: ClipPrompt, k: int) -> int:
    """The seed of sample k of a case: fixed, so every model is scored on the same draws."""
    return int(case.id) * 1000 + k


def truth_clips(case: ClipPrompt, n: int, size: int = 64) -> list[np.ndarray]:
    """Ground-truth renders of a case, [frames, size, size, 3] uint8 each: the ceiling."""
    return [render_clip(realize_clip(case.query, random.Random(sample_seed(case, k)), size=size, frames=case.frames))
            for k in range(n)]


def write_truth(folder: Path, cases: Sequence[ClipPrompt], per_case: int = 4, size: int = 64) -> int:
    """Write ground-truth clips in the suite's layout, DIR/<case id>/<k>/<frame:03d>.png, and
    return how many. A folder that already holds files is refused: two runs mixed score neither."""
    from PIL import Image

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"{folder} already holds files; give an empty or new folder for the clips")
    written = 0
    for case in cases:
        for k, clip in enumerate(truth_clips(case, per_case, size)):
            directory = folder / case.id / str(k)
            directory.mkdir(parents=True)
            for t, frame in enumerate(clip):
                Image.fromarray(frame).save(directory / f"{t:03d}.png")
            written += 1
    return written


def validate(cases: Sequence[ClipPrompt], per_case: int = 4, size: int = 64,
             progress: Callable[[str], None] | None = None) -> dict:
    """The oracle's validation table (atelier.evaluate.clipvalidate)."""
    from atelier.evaluate.clipvalidate import validate as run

    return run(cases, per_case=per_case, size=size, progress=progress)


def format_validation(table: dict) -> str:
    from atelier.evaluate.clipvalidate import format_validation as fmt

    return fmt(table)
