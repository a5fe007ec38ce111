"""Structured clip prompts: what a clip caption asserts, and the one place that decides
whether a sequence of frames (the truth, or the oracle's reading of pixels) satisfies it.

A ClipQuery is a static Query, asserted in every frame, plus motions of single-object groups
(its subjects). A frame may lack a subject that appears (nothing matching it) or show it as
asked; that it is absent first and present after is the motion's to judge. A recolouring
subject's group names no colour (its colours are the motion's).
Relations may link only still groups, whose positions do not change.

Thresholds are fractions of the image width (centres, diameters) and degrees; the world's
motions exceed them by a wide margin (see atelier.world.clips.staging), so a true clip passes
with room for the oracle's reading errors, and a clip that does the wrong thing does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Protocol

from atelier.world import vocab
from atelier.world.clips.motion import (
    BOUNCE_DIRECTIONS,
    DIRECTIONS,
    MOTIONS,
    ROTATING_SHAPES,
    SPINS,
    rotation_period,
    turning_textures,
    unit,
)
from atelier.world.images.query import ObjectQuery, Observed, ObservedBackground, Query

MIN_TRAVEL = 0.15  # a move's displacement, first to last frame
SECTOR = 22.5  # degrees either side of the asked direction: the 45-degree sector
MAX_BACKSTEP = 0.03  # a step against the motion that still counts as noise
MAX_SWAY = 0.06  # off the straight line of a move, or off the axis of a bounce
MIN_LEG = 0.1  # each leg of a bounce
EDGE_GAP = 0.08  # between a bouncing object and the edge it bounces off
MIN_TURN = 30.0  # degrees a rotation turns over the clip
TURN_AGREEMENT = 0.7  # share of frame-to-frame turns in the asked sense
MIN_SCALE = 1.3  # last over first diameter of a growth (its inverse for shrinking)
SIZE_SLACK = 0.1  # a growing object may dip this much below its largest size so far
# How far the centre of an object that changes in place may wander from its median: a turning
# shape's box centre circles its centroid; the others move only by sub-pixel snapping.
MAX_DRIFT = {"rotate": 0.08, "grow": 0.03, "shrink": 0.03, "recolour": 0.03, "appear": 0.03}
FOUND_SHARE = 0.85  # frames in which a moving subject must be seen
TRANSITION_SHARE = 0.25  # frames of a colour change that may show neither colour
GLITCH_SHARE = 0.125  # frames of an appearance that may disagree with absent-then-present


class Sighting(Observed, Protocol):
    """An object seen in a frame: a frame's truth (SceneObject) or the oracle's reading."""

    diameter: float
    angle: float | None  # degrees anticlockwise, None when it was not measured


FrameView = tuple[Sequence[Sighting], ObservedBackground | None]


@dataclass(frozen=True)
class MotionQuery:
    subject: int  # index into ClipQuery.scene.objects
    kind: str
    direction: str | None = None  # move, bounce
    spin: str | None = None  # rotate
    colours: tuple[str, ...] = ()  # recolour: (from, to)

    def __post_init__(self) -> None:
        if self.kind not in MOTIONS:
            raise ValueError(f"unknown motion {self.kind!r}; expected one of {', '.join(MOTIONS)}")
        allowed = {"move": tuple(DIRECTIONS), "bounce": BOUNCE_DIRECTIONS}.get(self.kind)
        if (self.direction is not None or allowed) and (allowed is None or self.direction not in allowed):
            takes = "a direction from " + ", ".join(allowed) if allowed else "no direction"
            raise ValueError(f"a {self.kind} takes {takes}, got {self.direction!r}")
        if (self.spin is not None or self.kind == "rotate") and (self.kind != "rotate" or self.spin not in SPINS):
            raise ValueError(f"only a rotation spins, {' or '.join(SPINS)}; got {self.kind} with {self.spin!r}")
        if self.kind == "recolour":
            if len(self.colours) != 2 or self.colours[0] == self.colours[1] or \
                    any(c not in vocab.COLOURS for c in self.colours):
                raise ValueError(f"a recolour names two different colours (from, to), got {self.colours}")
        elif self.colours:
            raise ValueError(f"only a recolour names colours, got {self.kind} with {self.colours}")


@dataclass(frozen=True)
class ClipQuery:
    scene: Query
    motions: tuple[MotionQuery, ...]

    def __post_init__(self) -> None:
        if not self.motions:
            raise ValueError("a clip query names at least one motion")
        subjects = [m.subject for m in self.motions]
        if len(set(subjects)) != len(subjects):
            raise ValueError(f"a group has at most one motion, got subjects {subjects}")
        for motion in self.motions:
            if not 0 <= motion.subject < len(self.scene.objects):
                raise ValueError(f"motion subject {motion.subject} is not a group of the scene")
            group = self.scene.objects[motion.subject]
            if group.count != 1:
                raise ValueError(f"a motion's subject is a single object, got a group of {group.count}")
            if motion.kind in ("move", "bounce") and group.region is not None:
                raise ValueError("an object that travels has no fixed region")
            if motion.kind in ("grow", "shrink") and group.size is not None:
                raise ValueError("an object that grows or shrinks has no fixed size")
            if motion.kind == "recolour" and group.colour is not None:
                raise ValueError("a recolouring subject's colours are its motion's, not its group's")
            if motion.kind == "rotate" and group.shape not in ROTATING_SHAPES:
                raise ValueError(f"a {group.shape} looks the same at every angle; rotating shapes are "
                                 f"{', '.join(ROTATING_SHAPES)}")
            if motion.kind == "rotate" and group.texture is not None and \
                    group.texture not in turning_textures(group.shape, group.size):
                raise ValueError(f"the world draws no {group.texture} {group.shape} that turns")
        for rel in self.scene.relations:
            if rel.subject in subjects or rel.reference in subjects:
                raise ValueError("relations link only still groups")

    def frame_failures(self, objects: Sequence[Sighting], background: ObservedBackground | None) -> list[str]:
        """Why one frame does not show the static part; empty when it does. A subject that
        appears may be absent (nothing matches its group) or present as asked; whether it was
        absent first is the motion's to judge."""
        absent = {m.subject for m in self.motions
                  if m.kind == "appear" and not any(self.scene.objects[m.subject].matches(o) for o in objects)}
        if not absent:
            return self.scene.failures(objects, background)
        keep = [i for i in range(len(self.scene.objects)) if i not in absent]
        if not keep:
            return self.scene.background.failures(background) if self.scene.background is not None else []
        index = {old: new for new, old in enumerate(keep)}
        relations = tuple(replace(r, subject=index[r.subject], reference=index[r.reference])
                          for r in self.scene.relations)  # relations link still groups only
        return Query(tuple(self.scene.objects[i] for i in keep), relations, self.scene.background).failures(
            objects, background)

    def frame_share(self, frames: Sequence[FrameView]) -> float:
        """Share of frames that show the static part (per-frame adherence)."""
        return sum(not self.frame_failures(*frame) for frame in frames) / len(frames)

    def motion_failures(self, frames: Sequence[FrameView]) -> list[str]:
        """Why the frames do not show the asked motions; empty when they do."""
        out = []
        for motion in self.motions:
            group = self.scene.objects[motion.subject]
            track = track_subject(frames, group)
            out += [f"{_name(group)}: {why}" for why in _CHECKS[motion.kind](motion, group, track)]
        return out

    def failures(self, frames: Sequence[FrameView]) -> list[str]:
        """Everything wrong with the frames: every frame's static failures and the motions'."""
        out = [f"frame {t}: {why}" for t, frame in enumerate(frames) for why in self.frame_failures(*frame)]
        return out + self.motion_failures(frames)

    def to_dict(self) -> dict:
        motions = [{k: v for k, v in asdict(m).items() if v not in (None, ())} for m in self.motions]
        for m in motions:
            if "colours" in m:
                m["colours"] = list(m["colours"])
        return {"scene": self.scene.to_dict(), "motions": motions}

    @classmethod
    def from_dict(cls, data: dict) -> ClipQuery:
        return cls(scene=Query.from_dict(data["scene"]),
                   motions=tuple(MotionQuery(**{**m, "colours": tuple(m.get("colours", ()))}) for m in data["motions"]))


def track_subject(frames: Sequence[FrameView], group: ObjectQuery) -> list[Sighting | None]:
    """The subject in each frame: the object matching its group, the one nearest to where it
    was last seen when several do; None where none does."""
    track: list[Sighting | None] = []
    last = None
    for objects, _ in frames:
        candidates = [o for o in objects if group.matches(o)]
        if last is not None and len(candidates) > 1:
            candidates.sort(key=lambda o: math.dist(o.centre, last.centre))
        seen = candidates[0] if candidates else None
        track.append(seen)
        last = seen or last
    return track


def _name(group: ObjectQuery) -> str:
    return " ".join(w for w in (group.size, group.colour, group.texture, group.shape) if w)


def _found(track: Sequence[Sighting | None]) -> tuple[list[int], list[str]]:
    """Indices where the subject is seen, and why that is too few to judge its motion."""
    seen = [t for t, s in enumerate(track) if s is not None]
    slack = int(len(track) * GLITCH_SHARE)
    if len(seen) < max(2, FOUND_SHARE * len(track)) or seen[0] > slack or seen[-1] < len(track) - 1 - slack:
        return seen, [f"seen in {len(seen)} of {len(track)} frames"]
    return seen, []


def _monotonic(values: Sequence[float], slack: float) -> bool:
    """Non-decreasing, up to steps back of at most `slack` from the running maximum."""
    peak = -math.inf
    for value in values:
        if value < peak - slack:
            return False
        peak = max(peak, value)
    return True


def _drift(kind: str, sightings: Sequence[Sighting]) -> list[str]:
    """Whether an object that changes in place stays in place."""
    xs = sorted(s.centre[0] for s in sightings)
    ys = sorted(s.centre[1] for s in sightings)
    middle = (xs[len(xs) // 2], ys[len(ys) // 2])
    wander = max(math.dist(s.centre, middle) for s in sightings)
    return [f"wanders {wander:.2f} of the width instead of staying put"] if wander > MAX_DRIFT[kind] else []


def _check_move(motion: MotionQuery, group: ObjectQuery, track) -> list[str]:
    seen, why = _found(track)
    if why:
        return why
    points = [track[t].centre for t in seen]
    dx, dy = points[-1][0] - points[0][0], points[-1][1] - points[0][1]
    length = math.hypot(dx, dy)
    if length < MIN_TRAVEL:
        return [f"travels {length:.2f} of the width, less than {MIN_TRAVEL}"]
    ux, uy = unit(motion.direction)
    off = math.degrees(math.acos(max(-1.0, min(1.0, (dx * ux + dy * uy) / length))))
    out = []
    if off > SECTOR:
        out.append(f"heads {off:.0f} degrees away from {motion.direction}")
    along = [(x - points[0][0]) * dx / length + (y - points[0][1]) * dy / length for x, y in points]
    across = [abs((x - points[0][0]) * dy / length - (y - points[0][1]) * dx / length) for x, y in points]
    if not _monotonic(along, MAX_BACKSTEP):
        out.append("does not keep moving one way")
    if max(across) > MAX_SWAY:
        out.append(f"strays {max(across):.2f} from a straight path")
    return out


def _check_bounce(motion: MotionQuery, group: ObjectQuery, track) -> list[str]:
    seen, why = _found(track)
    if why:
        return why
    ux, uy = unit(motion.direction)
    along = [track[t].centre[0] * ux + track[t].centre[1] * uy for t in seen]
    across = [track[t].centre[0] * uy - track[t].centre[1] * ux for t in seen]
    turn = max(range(len(along)), key=along.__getitem__)
    out = []
    if along[turn] - along[0] < MIN_LEG or along[turn] - along[-1] < MIN_LEG:
        return [f"does not go {motion.direction} and come back (legs {along[turn] - along[0]:.2f}, "
                f"{along[turn] - along[-1]:.2f}, each at least {MIN_LEG})"]
    if not _monotonic(along[:turn + 1], MAX_BACKSTEP) or not _monotonic([-a for a in along[turn:]], MAX_BACKSTEP):
        out.append("does not go straight out and back")
    if max(across) - min(across) > MAX_SWAY:
        out.append("strays off its line")
    extreme = track[seen[turn]]
    edge = extreme.centre[0] if ux < 0 else 1 - extreme.centre[0] if ux > 0 else \
        extreme.centre[1] if uy < 0 else 1 - extreme.centre[1]
    gap = edge - extreme.diameter / 2
    if gap > EDGE_GAP:
        out.append(f"turns {gap:.2f} short of the {motion.direction} edge")
    return out


def _check_rotate(motion: MotionQuery, group: ObjectQuery, track) -> list[str]:
    track = [s if s is not None and s.angle is not None else None for s in track]
    seen, why = _found(track)
    if why:
        return why
    period = rotation_period(group.shape)
    steps = []
    for a, b in zip(seen, seen[1:]):
        step = (track[b].angle - track[a].angle) % period
        steps.append(step - period if step > period / 2 else step)
    sense = -1.0 if motion.spin == "clockwise" else 1.0
    total = sense * sum(steps)
    agree = sum(sense * s > 0 for s in steps) / len(steps)
    out = []
    if total < MIN_TURN:
        out.append(f"turns {total:.0f} degrees {motion.spin}, less than {MIN_TURN:.0f}")
    if agree < TURN_AGREEMENT:
        out.append(f"only {agree:.0%} of its turns go {motion.spin}")
    return out + _drift(motion.kind, [track[t] for t in seen])


def _check_size(motion: MotionQuery, group: ObjectQuery, track) -> list[str]:
    seen, why = _found(track)
    if why:
        return why
    diameters = [track[t].diameter for t in seen]
    if motion.kind == "shrink":
        diameters = [1 / d for d in diameters]
    ratio = diameters[-1] / diameters[0]
    out = []
    if ratio < MIN_SCALE:
        out.append(f"{'grows' if motion.kind == 'grow' else 'shrinks'} by {ratio:.2f}x, less than {MIN_SCALE}x")
    peak = 0.0
    for d in diameters:
        if d < peak * (1 - SIZE_SLACK):
            out.append(f"does not {motion.kind} steadily")
            break
        peak = max(peak, d)
    return out + _drift(motion.kind, [track[t] for t in seen])


def _check_recolour(motion: MotionQuery, group: ObjectQuery, track) -> list[str]:
    start, end = motion.colours
    colours = [s.colour if s is not None else None for s in track]
    seen = [t for t, c in enumerate(colours) if c is not None]
    slack = int(len(track) * GLITCH_SHARE)  # a misread first or last frame is not a wrong colour
    first = colours[seen[0]] if seen and seen[0] <= slack else None
    last = colours[seen[-1]] if seen and seen[-1] >= len(track) - 1 - slack else None
    out = []
    if first != start:
        out.append(f"starts {first or 'unseen'}, not {start}")
    if last != end:
        out.append(f"ends {last or 'unseen'}, not {end}")
    first_end = colours.index(end) if end in colours else len(colours)
    if start in colours[first_end:]:
        out.append(f"turns back to {start}")
    neither = sum(c not in (start, end) for c in colours)
    if neither > TRANSITION_SHARE * len(colours):
        out.append(f"{neither} of {len(colours)} frames show neither {start} nor {end}")
    seen = [s for s in track if s is not None]
    return out + (_drift(motion.kind, seen) if seen else [])


def _check_appear(motion: MotionQuery, group: ObjectQuery, track) -> list[str]:
    present = [s is not None for s in track]
    slack = int(len(track) * GLITCH_SHARE) + 1  # frames at each end, so one misread end frame is forgiven
    out = []
    if all(present[:slack]):
        out.append("is there from the start")
    if not any(present[-slack:]):
        out.append("is not there at the end")
    glitches = min(sum(present[:k]) + sum(not p for p in present[k:]) for k in range(1, len(present)))
    if glitches > GLITCH_SHARE * len(present):
        out.append(f"comes and goes ({glitches} frames break absent-then-present)")
    seen = [s for s in track if s is not None]
    return out + (_drift(motion.kind, seen) if seen else [])


_CHECKS = {
    "move": _check_move, "bounce": _check_bounce, "rotate": _check_rotate, "grow": _check_size,
    "shrink": _check_size, "recolour": _check_recolour, "appear": _check_appear,
}
