"""The 3D objects suite: score multi-view samples against atelier/world/data/eval_objects.jsonl
from their pixels and the cameras each prompt fixes.

Adherence: each view is read on its own (atelier.evaluate.views) and is correct when the
shape, colour and size the prompt names are what the view shows. An object is correct when
at least MIN_VIEW_SHARE of its views are (three of four): one misread view, as at a grazing
angle, does not sink an object, while an object that is a cone from one side and a cube from
the other does not pass. A category's score is the share of correct objects; overall is the
mean of the categories, with bootstrap intervals over prompts (atelier.evaluate.suite).

Occupancy: the views' silhouettes are carved into a visual hull (atelier.evaluate.hull) on
the world's voxel grid and compared (IoU) with the best-aligned true solid, the prompt's
shape (or the shape most views show when it names none) at the turn and scale the views fit
best. A prompt fixes no pose, so the truth is the solid that best explains the views. Four
views at 15 to 30 degrees of elevation cannot carve everything: a cylinder's hull from four
sides is closer to a box, a torus's hole and the space under a cone's rim stay filled. The
IoU of the reference solid's own hull is reported beside it as the ceiling (0.69 on the truth).
A predicted occupancy (DIR/<case id>/<k>/occupancy.npy, bool or 0..1 [32, 32, 32] indexed
[x, y, z] over the cube [-1, 1]^3) replaces carving.

Folder layout:

    DIR/<case id>/<k>/<view:02d>.png   (.png, .jpg, .jpeg or .webp; views 00 .. V-1)
    DIR/<case id>/<k>/occupancy.npy    (optional)
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from atelier.evaluate.hull import carve, iou
from atelier.evaluate.suite import IMAGE_SUFFIXES, load_image, mean_of_groups, sample_seed, samples_present, score_rows
from atelier.evaluate.suite import format_table as suite_table
from atelier.evaluate.views import ViewReading, read_view
from atelier.world import vocab
from atelier.world.images.scene import jitter_colour
from atelier.world.objects.camera import Camera
from atelier.world.objects.evalset import CATEGORIES_3D, SUBSETS_3D, ObjectCase, load
from atelier.world.objects.primitives import SHAPES_3D
from atelier.world.objects.scene import (
    OCCUPANCY_RESOLUTION,
    Object3D,
    occupancy,
    realize_object,
    render_view,
    silhouette,
    stands_out,
)

MIN_VIEW_SHARE = 0.75
OCCUPANCY_FILE = "occupancy.npy"


@dataclass(frozen=True)
class ObjectVerdict:
    """What the oracle says of one multi-view sample."""

    correct: bool
    views_correct: tuple[bool, ...]
    failures: tuple[str, ...]
    consistent: bool  # every readable view shows the same shape and colour
    occupancy_iou: float
    ceiling: float  # the reference solid's own hull IoU (nan when no reference)
    seen: tuple[tuple[str | None, str | None, str | None], ...]  # (shape, colour, size) per view


@dataclass(frozen=True)
class CaseResult:
    case: ObjectCase
    verdicts: tuple[ObjectVerdict, ...]

    @property
    def prompt(self) -> ObjectCase:
        """The case, under the name atelier.evaluate.suite's summaries read."""
        return self.case

    @property
    def correct(self) -> tuple[bool, ...]:
        return tuple(v.correct for v in self.verdicts)

    @property
    def score(self) -> float:
        return float(np.mean(self.correct)) if self.verdicts else 0.0


def load_cases() -> tuple[ObjectCase, ...]:
    """The committed evaluation set of 3D prompts (atelier/world/data/eval_objects.jsonl)."""
    return load()


def _reference_shape(case: ObjectCase, readings: Sequence[ViewReading]) -> str | None:
    if case.query.shape is not None:
        return case.query.shape
    shapes = Counter(r.shape for r in readings if r.shape is not None)
    return shapes.most_common(1)[0][0] if shapes else None


def _occupancy_scores(readings: Sequence[ViewReading], cameras: Sequence[Camera], shape: str | None,
                      predicted: np.ndarray | None) -> tuple[float, float]:
    """(IoU of the hull or prediction with the best-aligned reference solid, that solid's own
    hull IoU). Candidate alignments are the reference shape's best fit in each view."""
    if shape is None:
        return 0.0, float("nan")
    resolution = OCCUPANCY_RESOLUTION
    hull = carve([r.mask for r in readings], cameras, resolution) if predicted is None else predicted
    poses = {r.fits[shape].pose for r in readings if r.fits[shape].iou > 0}
    if not poses:
        return 0.0, float("nan")
    scored = [(iou(hull, occupancy(pose, resolution)), pose) for pose in sorted(poses, key=lambda p: (p.yaw, p.scale))]
    best, pose = max(scored, key=lambda item: item[0])
    size = readings[0].mask.shape[0]
    own = carve([silhouette(pose, c, size, supersample=1) >= 0.5 for c in cameras], cameras, resolution)
    return best, iou(own, occupancy(pose, resolution))


def score_object(case: ObjectCase, views: Sequence, predicted: np.ndarray | None = None) -> ObjectVerdict:
    """Read one sample's views (one image per camera of the case) against the case's prompt."""
    if len(views) != len(case.cameras):
        raise ValueError(f"case {case.id} asks for {len(case.cameras)} views, got {len(views)}")
    readings = [read_view(view, camera) for view, camera in zip(views, case.cameras)]
    failures, views_correct = [], []
    for index, reading in enumerate(readings):
        why = case.query.failures(reading if (reading.shape or reading.colour) else None)
        views_correct.append(not why)
        failures += [f"view {index}: {w}" for w in why]
    needed = math.ceil(MIN_VIEW_SHARE * len(readings))
    correct = sum(views_correct) >= needed
    if not correct:
        failures.append(f"{sum(views_correct)} of {len(readings)} views correct, {needed} needed")
    readable = {(r.shape, r.colour) for r in readings if r.shape is not None}
    iou_score, ceiling = _occupancy_scores(readings, case.cameras, _reference_shape(case, readings), predicted)
    return ObjectVerdict(correct=correct, views_correct=tuple(views_correct), failures=tuple(failures),
                         consistent=len(readable) == 1 and all(r.shape is not None for r in readings),
                         occupancy_iou=iou_score, ceiling=ceiling,
                         seen=tuple((r.shape, r.colour, r.size) for r in readings))


def summarise(results: Sequence[CaseResult]) -> dict:
    """Adherence per category and subset with 95% bootstrap intervals over prompts (the
    image suite's code), overall as the mean of categories; the mean occupancy IoU and its
    ceiling, the share of views read correctly and of objects whose views agree."""
    rng = np.random.default_rng(0)

    def scores_by(field: str, names: Sequence[str]) -> dict[str, np.ndarray]:
        groups = {name: np.array([r.score for r in results if getattr(r.case, field) == name]) for name in names}
        return {name: scores for name, scores in groups.items() if len(scores)}

    by_category = scores_by("category", CATEGORIES_3D)
    overall, overall_ci95 = mean_of_groups(by_category, rng)
    verdicts = [v for r in results for v in r.verdicts]
    ceilings = [v.ceiling for v in verdicts if not math.isnan(v.ceiling)]
    return {
        "overall": overall,
        "overall_ci95": overall_ci95,
        "categories": score_rows(by_category, rng),
        "subsets": score_rows(scores_by("subset", SUBSETS_3D), rng),
        "occupancy_iou": float(np.mean([v.occupancy_iou for v in verdicts])) if verdicts else float("nan"),
        "occupancy_ceiling": float(np.mean(ceilings)) if ceilings else float("nan"),
        "view_accuracy": float(np.mean([c for v in verdicts for c in v.views_correct])) if verdicts else float("nan"),
        "consistency": float(np.mean([v.consistent for v in verdicts])) if verdicts else float("nan"),
        "objects": len(verdicts),
    }


def format_table(summary: dict) -> str:
    lines = [suite_table(summary, counted="objects")]
    lines.append(f"{'views read correctly':<22}{summary['view_accuracy']:>7.3f}")
    lines.append(f"{'consistent objects':<22}{summary['consistency']:>7.3f}")
    lines.append(f"{'occupancy IoU':<22}{summary['occupancy_iou']:>7.3f}   "
                 f"(ceiling of 4-view hulls {summary['occupancy_ceiling']:.3f})")
    return "\n".join(lines)


def report(results: Sequence[CaseResult], **extra) -> dict:
    """The JSON report: the summary plus every case's per-object verdicts."""
    return {
        **extra,
        **summarise(results),
        "cases": [
            {"id": r.case.id, "category": r.case.category, "subset": r.case.subset, "text": r.case.text,
             "correct": list(r.correct), "failures": [list(v.failures) for v in r.verdicts],
             "views_correct": [list(v.views_correct) for v in r.verdicts],
             "seen": [[list(s) for s in v.seen] for v in r.verdicts],
             "occupancy_iou": [round(v.occupancy_iou, 4) for v in r.verdicts],
             "ceiling": [None if math.isnan(v.ceiling) else round(v.ceiling, 4) for v in r.verdicts],
             "consistent": [v.consistent for v in r.verdicts]}
            for r in results
        ],
    }


def truth_object(case: ObjectCase, k: int) -> Object3D:
    """Sample k of a case's ground truth: fixed, so every model is scored on the same draws."""
    return realize_object(case.query, random.Random(sample_seed(case, k)))


def truth_views(case: ObjectCase, k: int, size: int = 64) -> list[np.ndarray]:
    obj = truth_object(case, k)
    return [render_view(obj, camera, size) for camera in case.cameras]


def write_truth(folder: Path, cases: Sequence[ObjectCase], per_case: int = 2, size: int = 64) -> Path:
    """Ground-truth renders in the suite's layout: the ceiling any generator can reach."""
    from PIL import Image

    folder = Path(folder)
    for case in cases:
        for k in range(per_case):
            directory = folder / case.id / str(k)
            directory.mkdir(parents=True, exist_ok=True)
            for index, view in enumerate(truth_views(case, k, size)):
                Image.fromarray(view).save(directory / f"{index:02d}.png")
    return folder


def _sample_dirs(folder: Path, case: ObjectCase) -> list[Path]:
    directory = folder / case.id
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def _load_sample(directory: Path, case: ObjectCase) -> tuple[list[np.ndarray], np.ndarray | None]:
    views: dict[int, Path] = {}
    for path in directory.iterdir():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if not path.stem.isdigit() or int(path.stem) >= len(case.cameras):
            raise ValueError(f"{path}: views are named 00 .. {len(case.cameras) - 1:02d} (one per camera of case "
                             f"{case.id})")
        if int(path.stem) in views:
            raise ValueError(f"{directory}: more than one file for view {int(path.stem)}")
        views[int(path.stem)] = path
    missing = [f"{i:02d}" for i in range(len(case.cameras)) if i not in views]
    if missing:
        raise ValueError(f"{directory}: missing views {', '.join(missing)}; expected one image per camera, "
                         f"named 00 .. {len(case.cameras) - 1:02d}")
    predicted = None
    if (directory / OCCUPANCY_FILE).exists():
        predicted = _load_occupancy(directory / OCCUPANCY_FILE)
    return [load_image(views[i]) for i in range(len(case.cameras))], predicted


def _load_occupancy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable .npy array ({error})") from error
    expected = (OCCUPANCY_RESOLUTION,) * 3
    if array.shape != expected or not (array.dtype == bool or np.issubdtype(array.dtype, np.number)):
        raise ValueError(f"{path}: occupancy must be a bool or numeric array of shape {expected} indexed [x, y, z] "
                         f"over [-1, 1]^3, got {array.dtype} {array.shape}")
    return array.astype(np.float64) >= 0.5


def score_folder(folder: Path, cases: Sequence[ObjectCase], partial: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> list[CaseResult]:
    """Score DIR/<case id>/<k>/<view:02d>.png. Missing cases are an error unless `partial`,
    so a full-suite score is never quietly computed on part of the suite."""
    chosen = samples_present(folder, cases, _sample_dirs, "DIR/<case id>/<k>/<view:02d>.png", partial, noun="cases")
    results = []
    for done, (case, directories) in enumerate(chosen, start=1):
        verdicts = []
        for directory in directories:
            views, predicted = _load_sample(directory, case)
            verdicts.append(score_object(case, views, predicted))
        results.append(CaseResult(case=case, verdicts=tuple(verdicts)))
        if progress:
            progress(done, len(chosen))
    return results


# --- validation of the oracle itself -------------------------------------------------------------

WRONG_ELEVATION = math.radians(45)  # "wrong cameras" raise every view by this much ...
WRONG_AZIMUTH = (math.pi / 3, 5 * math.pi / 3)  # ... and turn it by an angle drawn from this range


def _other_shape(obj: Object3D, rng: random.Random) -> Object3D:
    return replace(obj, shape=rng.choice([s for s in SHAPES_3D if s != obj.shape]))


def _other_colour(obj: Object3D, rng: random.Random) -> Object3D:
    """The object in another colour that still stands out from its background."""
    for colour in rng.sample(vocab.COLOUR_NAMES, len(vocab.COLOUR_NAMES)):
        rgb = jitter_colour(rng, colour)
        if colour != obj.colour and colour not in obj.background.colours and stands_out(rgb, obj.background):
            return replace(obj, colour=colour, rgb=rgb)
    raise ValueError(f"no other colour stands out on a {obj.background.colours[0]} background")


def _other_object(obj: Object3D, rng: random.Random) -> Object3D:
    return _other_colour(_other_shape(obj, rng), rng)


def _wrong_cameras(cameras: Sequence[Camera], rng: random.Random) -> list[Camera]:
    return [Camera((c.azimuth + rng.uniform(*WRONG_AZIMUTH)) % (2 * math.pi),
                   min(c.elevation + WRONG_ELEVATION, math.radians(80)), c.distance) for c in cameras]


def _shuffled(cases: Sequence[ObjectCase], seed: int = 0) -> dict[str, ObjectCase]:
    """Each case with the prompt of another case of its category that asks something else
    (its own cameras kept: the views were drawn from them)."""
    rng = random.Random(seed)
    pairing = {}
    for category in CATEGORIES_3D:
        group = [c for c in cases if c.category == category]
        for case in group:
            others = [o for o in group if o.query != case.query]
            if others:
                other = rng.choice(others)
                pairing[case.id] = replace(case, query=other.query, text=other.text)
    return pairing


def _conditions(case: ObjectCase, objects: list[Object3D], truth: list[list[np.ndarray]],
                size: int) -> dict[str, list[list[np.ndarray]]]:
    """Every validation condition's views of one case, k samples each."""
    from atelier.evaluate.validate import DEGRADATIONS, HARSH_DEGRADATIONS

    out = {"truth": truth}
    for name, degrade in {**DEGRADATIONS, **HARSH_DEGRADATIONS}.items():
        out[name] = [[degrade(v) for v in views] for views in truth]
    noise = np.random.default_rng(int(case.id))
    out["uniform noise"] = [[noise.integers(0, 256, v.shape, dtype=np.uint8) for v in views] for views in truth]
    rng = random.Random(int(case.id))

    def views_of(changed: list[Object3D], cameras: Sequence[Camera] = case.cameras) -> list[list[np.ndarray]]:
        return [[render_view(o, c, size) for c in cameras] for o in changed]

    out["wrong shape"] = views_of([_other_shape(o, rng) for o in objects])
    out["wrong colour"] = views_of([_other_colour(o, rng) for o in objects])
    out["wrong cameras"] = [views_of([o], _wrong_cameras(case.cameras, rng))[0] for o in objects]
    others = views_of([_other_object(o, rng) for o in objects])
    out["mixed objects"] = [[b if i % 2 else a for i, (a, b) in enumerate(zip(views, other))]
                            for views, other in zip(truth, others)]
    return out


def validate(cases: Sequence[ObjectCase], per_case: int = 2, size: int = 64,
             progress: Callable[[str], None] | None = None) -> dict:
    """The validation table: one row per condition, with its summary. Conditions: the truth,
    mildly degraded truth (atelier.evaluate.validate's blur, noise, JPEG), uniform noise,
    prompts shuffled within their category, and simulated failures: a wrong shape in the
    right colour, a wrong colour on the right shape, views from the wrong cameras, and views
    of two different objects alternating."""
    shuffled = _shuffled(cases)
    results: dict[str, list[CaseResult]] = {}
    for done, case in enumerate(cases, start=1):
        objects = [truth_object(case, k) for k in range(per_case)]
        truth = [[render_view(o, c, size) for c in case.cameras] for o in objects]
        for name, samples in _conditions(case, objects, truth, size).items():
            verdicts = tuple(score_object(case, views) for views in samples)
            results.setdefault(name, []).append(CaseResult(case=case, verdicts=verdicts))
        if case.id in shuffled:
            other = shuffled[case.id]
            results.setdefault("shuffled prompts", []).append(
                CaseResult(case=other, verdicts=tuple(score_object(other, views) for views in truth)))
        if progress and (done % 10 == 0 or done == len(cases)):
            progress(f"validated {done} of {len(cases)} cases")
    order = ["truth", "blur", "noise", "jpeg", "blur+noise+jpeg", "jpeg 4:2:0", "uniform noise", "shuffled prompts",
             "wrong shape", "wrong colour", "wrong cameras", "mixed objects"]
    rows = {name: summarise(results[name]) for name in order if name in results}
    return {"per_case": per_case, "size": size, "cases": len(cases), "conditions": rows}


def format_validation(table: dict) -> str:
    head = f"{'condition':<18}{'overall':>8}" + "".join(f"{c[:9]:>10}" for c in CATEGORIES_3D)
    lines = [head + f"{'views':>8}{'consist':>8}{'occ IoU':>9}{'ceiling':>9}"]
    for name, row in table["conditions"].items():
        cells = "".join(f"{row['categories'][c]['score']:>10.3f}" if c in row["categories"] else f"{'-':>10}"
                        for c in CATEGORIES_3D)
        lines.append(f"{name:<18}{row['overall']:>8.3f}{cells}{row['view_accuracy']:>8.3f}{row['consistency']:>8.3f}"
                     f"{row['occupancy_iou']:>9.3f}{row['occupancy_ceiling']:>9.3f}")
    lines.append(f"({table['cases']} cases x {table['per_case']} objects x 4 views at {table['size']} px; "
                 f"an object is correct when at least {MIN_VIEW_SHARE:.0%} of its views are)")
    return "\n".join(lines)
