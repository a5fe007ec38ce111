"""The image suite: score generated samples against the evaluation set and report per
category (GenEval's protocol: an image is correct when everything its prompt asks for is
there; a category's score is the share of correct images; overall is the mean of the
categories), with bootstrap confidence intervals over prompts and a line per held-out subset.

Folder layout, one folder per prompt id of atelier/world/data/eval_images.jsonl:

    DIR/0000/0.png  DIR/0000/1.png ...  DIR/0647/3.png   (.png, .jpg, .jpeg or .webp)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atelier.evaluate.detect import read, to_float
from atelier.world.images.evalset import CATEGORIES, SUBSETS, EvalPrompt
from atelier.world.images.query import Query

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
BOOTSTRAP_SAMPLES = 1000


@dataclass(frozen=True)
class PromptResult:
    prompt: EvalPrompt
    correct: tuple[bool, ...]  # one per image
    failures: tuple[tuple[str, ...], ...]  # why each image failed

    @property
    def score(self) -> float:
        return float(np.mean(self.correct)) if self.correct else 0.0


def score_image(image, query: Query) -> tuple[bool, list[str]]:
    """Whether an image satisfies a query, and if not, why."""
    reading = read(image)
    failures = query.failures(reading.objects, reading.background)
    return not failures, failures


def score_prompt(prompt: EvalPrompt, images: Sequence) -> PromptResult:
    verdicts = [score_image(image, prompt.query) for image in images]
    return PromptResult(prompt=prompt, correct=tuple(ok for ok, _ in verdicts),
                        failures=tuple(tuple(f) for _, f in verdicts))


def _bootstrap(per_prompt: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    if len(per_prompt) == 0:
        return (float("nan"), float("nan"))
    draws = rng.integers(0, len(per_prompt), size=(BOOTSTRAP_SAMPLES, len(per_prompt)))
    means = per_prompt[draws].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def score_rows(groups: dict[str, np.ndarray], rng: np.random.Generator, count_name: str = "prompts") -> dict:
    """Per group: its mean score, a 95% bootstrap interval resampling its members, its size.
    Shared by every suite (images, edits, ...) so their intervals mean the same thing."""
    return {name: {"score": float(scores.mean()), "ci95": list(_bootstrap(scores, rng)), count_name: len(scores)}
            for name, scores in groups.items()}


def mean_of_groups(groups: dict[str, np.ndarray], rng: np.random.Generator) -> tuple[float, list[float]]:
    """The mean of the groups' mean scores (each category weighs the same, as in GenEval) and
    its 95% bootstrap interval, resampling each group's members on their own."""
    if not groups:
        return float("nan"), [float("nan"), float("nan")]
    overall = float(np.mean([scores.mean() for scores in groups.values()]))
    draws = [np.mean([s[rng.integers(0, len(s), len(s))].mean() for s in groups.values()])
             for _ in range(BOOTSTRAP_SAMPLES)]
    return overall, [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


def summarise(results: Sequence[PromptResult]) -> dict:
    """Scores per category and subset with 95% bootstrap intervals (resampling prompts,
    since images of one prompt are not independent); deterministic."""
    rng = np.random.default_rng(0)

    def scores_by(field: str, names: Sequence[str]) -> dict[str, np.ndarray]:
        groups = {name: np.array([r.score for r in results if getattr(r.prompt, field) == name]) for name in names}
        return {name: scores for name, scores in groups.items() if len(scores)}

    by_category = scores_by("category", CATEGORIES)
    categories = score_rows(by_category, rng)
    subsets = score_rows(scores_by("subset", SUBSETS), rng)
    overall, overall_ci95 = mean_of_groups(by_category, rng)
    return {
        "overall": overall,
        "overall_ci95": overall_ci95,
        "categories": categories,
        "subsets": subsets,
        "images": int(sum(len(r.correct) for r in results)),
    }


def report(results: Sequence[PromptResult], **extra) -> dict:
    """The JSON report: the summary plus every prompt's per-image verdicts."""
    return {
        **extra,
        **summarise(results),
        "prompts": [
            {"id": r.prompt.id, "category": r.prompt.category, "subset": r.prompt.subset, "text": r.prompt.text,
             "correct": list(r.correct), "failures": [list(f) for f in r.failures]}
            for r in results
        ],
    }


def format_table(summary: dict, counted: str = "images") -> str:
    """Per category and subset, then overall; `counted` names what summary[counted] counts."""
    lines = [f"{'category':<22}{'score':>7}   {'95% CI':<15}{'prompts':>8}"]
    for name, row in list(summary["categories"].items()) + [("", None)] + list(summary["subsets"].items()):
        if row is None:
            lines.append("-" * 54)
            continue
        low, high = row["ci95"]
        lines.append(f"{name:<22}{row['score']:>7.3f}   [{low:.3f}, {high:.3f}]{row['prompts']:>8}")
    low, high = summary["overall_ci95"]
    lines.append("-" * 54)
    lines.append(f"{'overall':<22}{summary['overall']:>7.3f}   [{low:.3f}, {high:.3f}]   {counted} {summary[counted]}")
    return "\n".join(lines)


def load_image(path: Path) -> np.ndarray:
    """An image file as a float RGB array the oracle reads, or a clear error naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return to_float(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from error


def sample_paths(folder: Path, prompt: EvalPrompt) -> list[Path]:
    """The prompt's samples in order of k; two files for one k (0.png and 0.jpg) are refused."""
    directory = folder / prompt.id
    if not directory.is_dir():
        return []
    paths = sorted((p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: (len(p.stem), p.stem))
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise ValueError(f"{directory}: more than one file for the same sample ({', '.join(p.name for p in paths)})")
    return paths


def samples_present(folder: Path, cases: Sequence, find: Callable[[Path, Any], list], layout: str,
                    partial: bool = False, noun: str = "prompts", what: str = "samples") -> list[tuple[Any, list]]:
    """(case, its samples) for the cases with samples in `folder`, `find(folder, case)` listing them.
    Missing cases are an error unless `partial`, so a full-suite score is never quietly computed on
    part of the suite; every suite scores its folders through this."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder of {what}")
    found = [(case, find(folder, case)) for case in cases]
    missing = [case.id for case, entries in found if not entries]
    if missing and not partial:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{folder}: no {what} for {len(missing)} of {len(cases)} {noun} ({shown}); "
                         f"expected {layout}, or pass --partial to score what is there")
    chosen = [(case, entries) for case, entries in found if entries]
    if not chosen:
        raise ValueError(f"{folder}: no {what} for any {noun.rstrip('s')}; expected {layout}")
    return chosen


def score_folder(folder: Path, prompts: Sequence[EvalPrompt], partial: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> list[PromptResult]:
    """Score DIR/<prompt id>/<k>.<ext>; missing prompts are an error unless `partial`."""
    chosen = samples_present(folder, prompts, sample_paths, "DIR/<prompt id>/<k>.png", partial)
    results = []
    for done, (prompt, paths) in enumerate(chosen, start=1):
        results.append(score_prompt(prompt, [load_image(path) for path in paths]))
        if progress:
            progress(done, len(chosen))
    return results


def sample_seed(prompt: EvalPrompt, k: int) -> int:
    """The seed of image k of a prompt: fixed, so every model is scored on the same draws."""
    return int(prompt.id) * 1000 + k


def truth_images(prompt: EvalPrompt, n: int, size: int = 64) -> list[np.ndarray]:
    """Ground-truth renders of a prompt: the ceiling any generator can reach."""
    from atelier.world.images.render import render
    from atelier.world.images.scene import realize

    return [render(realize(prompt.query, random.Random(sample_seed(prompt, k)), size=size)) for k in range(n)]
