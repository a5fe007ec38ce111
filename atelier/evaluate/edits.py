"""The edits suite: score a model's edits of the evaluation cases from pixels alone.

An output is correct when, read by the same oracle as the image suite, (1) the case's region
query holds inside the edit region (only the objects whose centre lies in the region's box
count; a background edit reads the whole background) and (2) every object the edit leaves
alone is still there: a detection of its shape and colour within KEEP_TOLERANCE of its
centre, so a model that wipes or redraws the whole image fails. Beside correctness, and not
part of it, the suite reports how much of the source a model's raw output (before any
paste-back) kept outside the mask: PSNR against the source over the pixels outside the mask,
capped at PSNR_CAP dB, since an untouched outside would otherwise score infinity; the mean
and median over outputs, as in inpainting benchmarks that score the unmasked area.

Folder layout (write_inputs writes the inputs, a model adds its outputs beside them or in
another folder):

    DIR/<case id>/source.png  mask.png (white = edit, black = keep)  instruction.txt  caption.txt
    DIR/<case id>/0.png  1.png ...                                   (.png, .jpg, .jpeg or .webp)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atelier.evaluate.detect import Detection, read, to_float
from atelier.evaluate.suite import IMAGE_SUFFIXES, load_image, mean_of_groups, samples_present, score_rows
from atelier.world import vocab
from atelier.world.edits import evalset as editset
from atelier.world.edits.evalset import CATEGORIES, EditCase
from atelier.world.edits.pairs import EditPair

PSNR_CAP = 60.0  # dB; an output identical to the source outside the mask scores this
KEEP_TOLERANCE = 0.05  # fraction of the width a kept object's read centre may move (3 px at 64)


@dataclass(frozen=True)
class EditVerdict:
    correct: bool  # region and kept both hold
    region: bool  # the region query holds
    kept: bool  # every object outside the region is still there
    psnr_outside: float  # dB against the source, outside the mask, capped at PSNR_CAP
    failures: tuple[str, ...]


@dataclass(frozen=True)
class CaseResult:
    case: EditCase
    verdicts: tuple[EditVerdict, ...]  # one per output

    @property
    def score(self) -> float:
        return float(np.mean([v.correct for v in self.verdicts])) if self.verdicts else 0.0


def load_cases() -> tuple[EditCase, ...]:
    """The committed evaluation cases (atelier/world/data/eval_edits.jsonl)."""
    return editset.load()


def psnr_outside(output: np.ndarray, source: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, peak 1) of an output against the source over the pixels where `mask` is
    False, capped at PSNR_CAP; nan when the mask leaves nothing outside. Arrays as the oracle
    reads them (uint8 or float in 0..1), [H, W, 3]; mask [H, W] bool, True = edit."""
    output, source = to_float(output), to_float(source)
    mask = np.asarray(mask, dtype=bool)
    if output.shape != source.shape or mask.shape != output.shape[:2]:
        raise ValueError(f"output {output.shape[1]}x{output.shape[0]}, source {source.shape[1]}x{source.shape[0]} "
                         f"and mask {mask.shape[1] if mask.ndim == 2 else mask.shape}x{mask.shape[0]} "
                         f"must all be the same size")
    outside = ~mask
    if not outside.any():
        return float("nan")
    mse = float(((output[outside] - source[outside]) ** 2).mean())
    return PSNR_CAP if mse == 0 else float(min(PSNR_CAP, 10 * np.log10(1.0 / mse)))


def kept_failures(pair: EditPair, objects: Sequence[Detection]) -> list[str]:
    """The objects the edit leaves alone that cannot be found any more (each detection
    vouches for one object at most)."""
    unused = list(objects)
    out = []
    for obj in pair.kept:
        match = next((d for d in unused if d.shape == obj.shape and d.colour == obj.colour
                      and max(abs(d.centre[0] - obj.centre[0]), abs(d.centre[1] - obj.centre[1])) <= KEEP_TOLERANCE),
                     None)
        if match is None:
            out.append(f"the kept {obj.colour} {obj.shape} at {vocab.REGIONS[obj.region]} is gone")
        else:
            unused.remove(match)
    return out


def score_output(pair: EditPair, image) -> EditVerdict:
    """One output of an edit against its pair's truth."""
    pixels = to_float(image)
    size = pair.edit_mask.shape[0]
    if pixels.shape[:2] != pair.edit_mask.shape:
        raise ValueError(f"the output is {pixels.shape[1]}x{pixels.shape[0]} but the edit's mask is {size}x{size}")
    reading = read(pixels)
    region = pair.region_failures(reading.objects, reading.background)
    kept = kept_failures(pair, reading.objects)
    return EditVerdict(correct=not region and not kept, region=not region, kept=not kept,
                       psnr_outside=psnr_outside(pixels, pair.source_image, pair.edit_mask),
                       failures=tuple(region + kept))


def score_case(case: EditCase, pair: EditPair, images: Sequence) -> CaseResult:
    return CaseResult(case=case, verdicts=tuple(score_output(pair, image) for image in images))


# --- folders -----------------------------------------------------------------------------


def _save(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(array).save(path)


def write_inputs(folder: Path, cases: Sequence[EditCase], size: int = 64) -> Path:
    """DIR/<case id>/source.png, mask.png (white = edit, black = keep), instruction.txt and
    caption.txt: everything an editing model needs, at `size` pixels. (The HTTP API's mask is
    the other way round, alpha 0 = edit: invert mask.png to send it there.)"""
    folder = Path(folder)
    for case in cases:
        pair = case.pair(size)
        directory = folder / case.id
        directory.mkdir(parents=True, exist_ok=True)
        _save(pair.source_image, directory / "source.png")
        _save(pair.edit_mask.astype(np.uint8) * 255, directory / "mask.png")
        (directory / "instruction.txt").write_text(pair.instruction + "\n")
        (directory / "caption.txt").write_text(pair.caption + "\n")
    return folder


def write_truth(folder: Path, cases: Sequence[EditCase], per_case: int = 1, size: int = 64) -> Path:
    """The true targets as outputs, DIR/<case id>/<k>.png: the ceiling any editor can reach."""
    folder = Path(folder)
    for case in cases:
        directory = folder / case.id
        directory.mkdir(parents=True, exist_ok=True)
        target = case.pair(size).target_image
        for k in range(per_case):
            _save(target, directory / f"{k}.png")
    return folder


def output_paths(folder: Path, case: EditCase) -> list[Path]:
    """A case's outputs <k>.<ext> in order of k (source.png and mask.png are inputs, not
    outputs); two files for one k (0.png and 0.jpg) are refused."""
    directory = Path(folder) / case.id
    if not directory.is_dir():
        return []
    paths = sorted((p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.stem.isdigit()),
                   key=lambda p: int(p.stem))
    ks = [int(p.stem) for p in paths]
    if len(set(ks)) != len(ks):
        raise ValueError(f"{directory}: more than one file for the same output ({', '.join(p.name for p in paths)})")
    return paths


def case_seed(case: EditCase) -> int:
    """The seed of a case's first output (output k has seed + k): fixed, so every model edits the same draws."""
    return int(case.id) * 1000


def raw_psnr(folder: Path, cases: Sequence[EditCase]) -> dict | None:
    """PSNR outside the mask of the raw outputs DIR/<case id>/raw/<k>.png (a model's output
    before it is pasted back into the source) against source.png and mask.png, or None when the
    folder holds none; paste-back makes the final outputs' PSNR outside infinite by construction."""
    values = []
    for case in cases:
        directory = Path(folder) / case.id
        raw = directory / "raw"
        if not raw.is_dir():
            continue
        source, mask = load_image(directory / "source.png"), load_image(directory / "mask.png")[:, :, 0] >= 0.5
        values += [psnr_outside(load_image(path), source, mask) for path in sorted(raw.iterdir())
                   if path.suffix.lower() in IMAGE_SUFFIXES and path.stem.isdigit()]
    return {**_stats(values), "outputs": len(values), "cap": PSNR_CAP} if values else None


def _case_pair(directory: Path, case: EditCase, images: list[np.ndarray], paths: list[Path]) -> EditPair:
    """The case's pair at the size of its outputs, checked against its mask.png when the
    inputs were written there."""
    from PIL import Image

    mask_path = directory / "mask.png"
    mask = None
    if mask_path.exists():
        with Image.open(mask_path) as image:
            mask = np.asarray(image.convert("L")) >= 128
        size = mask.shape[1]
    else:
        size = images[0].shape[0]
    for path, image in zip(paths, images):
        if image.shape[0] != size:
            what = "mask.png" if mask is not None else f"{paths[0].name}"
            raise ValueError(f"{path}: the output is {image.shape[1]}x{image.shape[0]} but {what} is {size}x{size}; "
                             f"an edit keeps the source's size")
    try:
        pair = case.pair(size)
    except ValueError as error:
        raise ValueError(f"{directory}: {error}") from error
    if mask is not None and (mask.shape != pair.edit_mask.shape or (mask != pair.edit_mask).any()):
        raise ValueError(f"{mask_path}: not the mask of case {case.id} ({case.instruction!r}); "
                         f"write the inputs again with write_inputs")
    return pair


def score_folder(folder: Path, cases: Sequence[EditCase], partial: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> list[CaseResult]:
    """Score DIR/<case id>/<k>.<ext>. Missing cases are an error unless `partial`, so a
    full-suite score is never quietly computed on part of the suite."""
    chosen = samples_present(folder, cases, output_paths, "DIR/<case id>/<k>.png", partial, noun="edit cases",
                             what="outputs")
    results = []
    for done, (case, paths) in enumerate(chosen, start=1):
        images = [load_image(path) for path in paths]
        pair = _case_pair(Path(folder) / case.id, case, images, paths)
        results.append(score_case(case, pair, images))
        if progress:
            progress(done, len(chosen))
    return results


# --- summaries ---------------------------------------------------------------------------


def _stats(values: list[float]) -> dict:
    finite = np.array([v for v in values if not np.isnan(v)])
    if not len(finite):
        return {"mean": float("nan"), "median": float("nan")}
    return {"mean": float(finite.mean()), "median": float(np.median(finite))}


def summarise(results: Sequence[CaseResult]) -> dict:
    """Scores per kind with 95% bootstrap intervals (resampling cases, since outputs of one
    case are not independent), overall as the mean of the kinds; the share of outputs whose
    region holds and whose kept objects survive, and PSNR outside the mask. Deterministic."""
    rng = np.random.default_rng(0)
    groups = {kind: [r for r in results if r.case.category == kind] for kind in CATEGORIES}
    groups = {kind: members for kind, members in groups.items() if members}
    by_kind = {kind: np.array([r.score for r in members]) for kind, members in groups.items()}
    categories = score_rows(by_kind, rng, count_name="cases")
    for kind, members in groups.items():
        verdicts = [v for r in members for v in r.verdicts]
        categories[kind]["region"] = float(np.mean([v.region for v in verdicts]))
        categories[kind]["kept"] = float(np.mean([v.kept for v in verdicts]))
        categories[kind]["psnr_outside"] = _stats([v.psnr_outside for v in verdicts])
    overall, overall_ci95 = mean_of_groups(by_kind, rng)
    nan = float("nan")
    return {
        "overall": overall,
        "overall_ci95": overall_ci95,
        "categories": categories,
        "region": float(np.mean([row["region"] for row in categories.values()])) if categories else nan,
        "kept": float(np.mean([row["kept"] for row in categories.values()])) if categories else nan,
        "psnr_outside": {**_stats([v.psnr_outside for r in results for v in r.verdicts]), "cap": PSNR_CAP},
        "images": int(sum(len(r.verdicts) for r in results)),
    }


def format_table(summary: dict) -> str:
    lines = [f"{'kind':<12}{'score':>7}   {'95% CI':<15}{'cases':>6}{'region':>8}{'kept':>7}{'PSNR out':>10}"]
    for name, row in summary["categories"].items():
        low, high = row["ci95"]
        lines.append(f"{name:<12}{row['score']:>7.3f}   [{low:.3f}, {high:.3f}]{row['cases']:>6}"
                     f"{row['region']:>8.3f}{row['kept']:>7.3f}{row['psnr_outside']['mean']:>10.1f}")
    low, high = summary["overall_ci95"]
    psnr = summary["psnr_outside"]
    lines.append("-" * 65)
    lines.append(f"{'overall':<12}{summary['overall']:>7.3f}   [{low:.3f}, {high:.3f}]{'':>6}"
                 f"{summary['region']:>8.3f}{summary['kept']:>7.3f}{psnr['mean']:>10.1f}")
    lines.append(f"outputs {summary['images']}; PSNR outside the mask (dB, capped at {psnr['cap']:.0f}): "
                 f"mean {psnr['mean']:.1f}, median {psnr['median']:.1f}")
    return "\n".join(lines)


def report(results: Sequence[CaseResult], **extra) -> dict:
    """The JSON report: the summary plus every case's per-output verdicts."""
    return {
        **extra,
        **summarise(results),
        "cases": [
            {"id": r.case.id, "category": r.case.category, "instruction": r.case.instruction,
             "correct": [v.correct for v in r.verdicts], "region": [v.region for v in r.verdicts],
             "kept": [v.kept for v in r.verdicts], "psnr_outside": [v.psnr_outside for v in r.verdicts],
             "failures": [list(v.failures) for v in r.verdicts]}
            for r in results
        ],
    }


# --- validation of the oracle ------------------------------------------------------------

FRESH_TRIES = 50  # draws of a fresh scene for the caption, looking for one whose region passes


def _shuffled(cases: Sequence[EditCase], seed: int = 0) -> dict[str, EditCase]:
    """Each case paired with another case of its kind (a derangement)."""
    rng = random.Random(seed)
    pairing = {}
    for kind in CATEGORIES:
        group = [c for c in cases if c.category == kind]
        if len(group) < 2:
            continue
        order = list(range(len(group)))
        while any(i == j for i, j in enumerate(order)):
            rng.shuffle(order)
        pairing.update({c.id: group[j] for c, j in zip(group, order)})
    return pairing


def _fresh(pair: EditPair, rng: random.Random) -> np.ndarray:
    """A new scene drawn for the target's caption, ignoring the source, preferring one whose
    region happens to pass: what a text-to-image model that never looked at the source makes."""
    from atelier.world.images.render import render
    from atelier.world.images.scene import realize

    for _ in range(FRESH_TRIES):
        scene = realize(pair.caption_query, rng, size=pair.source.size)
        if not pair.region_failures(scene.objects, scene.background):
            break
    return render(scene)


def validate(cases: Sequence[EditCase], per_case: int = 1, size: int = 64,
             progress: Callable[[str], None] | None = None) -> dict:
    """The validation table of the edits oracle: one row per condition, with its summary.

    Truth and its mild degradations must pass; noise, shuffled cases and the unchanged source
    must fail; a fresh scene for the caption may pass inside the region but must lose the
    kept objects and PSNR outside; pasting the truth back inside the mask changes nothing.
    """
    from atelier.evaluate.validate import DEGRADATIONS, HARSH_DEGRADATIONS

    pairs = {c.id: c.pair(size) for c in cases}
    truth = {cid: [pair.target_image] * per_case for cid, pair in pairs.items()}
    rows: dict[str, dict] = {}

    def record(name: str, images: dict[str, list[np.ndarray]]) -> None:
        rows[name] = summarise([score_case(c, pairs[c.id], images[c.id]) for c in cases if c.id in images])
        if progress:
            row = rows[name]
            progress(f"{name}: overall {row['overall']:.3f}, PSNR outside {row['psnr_outside']['mean']:.1f}")

    def paste(cid: str, image: np.ndarray) -> np.ndarray:
        pair = pairs[cid]
        return np.where(pair.edit_mask[:, :, None], image, pair.source_image)

    record("truth", truth)
    for name, degrade in {**DEGRADATIONS, **HARSH_DEGRADATIONS}.items():
        record(name, {cid: [degrade(i) for i in images] for cid, images in truth.items()})
    record("truth pasted in mask", {cid: [paste(cid, i) for i in images] for cid, images in truth.items()})
    degrade = DEGRADATIONS["blur+noise+jpeg"]
    record("degraded, pasted", {cid: [paste(cid, degrade(i)) for i in images] for cid, images in truth.items()})
    rng = np.random.default_rng(0)
    record("uniform noise", {cid: [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in images]
                             for cid, images in truth.items()})
    record("shuffled cases", {cid: truth[partner.id] for cid, partner in _shuffled(cases).items()})
    record("source unchanged", {cid: [pair.source_image] * per_case for cid, pair in pairs.items()})
    record("fresh scene", {c.id: [_fresh(pairs[c.id], random.Random(int(c.id) * 1000 + k)) for k in range(per_case)]
                           for c in cases})
    return {"per_case": per_case, "size": size, "conditions": rows}


def format_validation(table: dict) -> str:
    lines = [f"{'condition':<22}{'overall':>8} " + "".join(f"{k[:10]:>11}" for k in CATEGORIES)
             + f"{'region':>8}{'kept':>7}{'PSNR mean':>10}{'median':>8}"]
    for name, row in table["conditions"].items():
        cells = "".join(f"{row['categories'][k]['score']:>11.3f}" if k in row["categories"] else f"{'-':>11}"
                        for k in CATEGORIES)
        psnr = row["psnr_outside"]
        lines.append(f"{name:<22}{row['overall']:>8.3f} {cells}{row['region']:>8.3f}{row['kept']:>7.3f}"
                     f"{psnr['mean']:>10.1f}{psnr['median']:>8.1f}")
    lines.append(f"PSNR outside the mask against the source, dB, capped at {PSNR_CAP:.0f}; "
                 f"{table['per_case']} output(s) per case at {table['size']} px")
    return "\n".join(lines)
