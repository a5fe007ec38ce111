"""The 3D world's solids, in object coordinates (x, y horizontal, z up, origin at the centre
of the bounding box): an exact inside test, the first hit of a ray with its surface normal,
and the analytic volume that tests hold the voxel ground truth to.

Every solid but the torus is convex and written as the intersection of half-spaces and at
most one quadric, so one routine intersects all of them exactly (a slab test generalised
to any planes, Kay and Kajiya 1986, plus a quadratic). The torus, whose ray equation is a
quartic, is sphere traced on its exact distance function (Hart 1996), which never steps
through the surface. Each solid fits inside the vertical cylinder of radius 1 and height 2,
so a scaled-down solid stays inside the world cube [-1, 1]^3 at any turn about the z axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

SHAPES_3D: tuple[str, ...] = ("sphere", "cube", "cylinder", "cone", "torus", "pyramid", "octahedron", "prism")

_SPHERE_RADIUS = 0.8
_CUBE_HALF = 0.6
_CYLINDER_RADIUS, _CYLINDER_HALF_HEIGHT = 0.6, 0.7
_CONE_RADIUS, _CONE_HALF_HEIGHT = 0.75, 0.75
_TORUS_MAJOR, _TORUS_MINOR = 0.62, 0.22  # the hole shows from above asin(minor/major) = 21 degrees
_PYRAMID_HALF_BASE, _PYRAMID_HALF_HEIGHT = 0.72, 0.7
_OCTAHEDRON_HALF_WIDTH, _OCTAHEDRON_HALF_HEIGHT = 0.75, 0.95
_PRISM_HALF_BASE, _PRISM_HALF_LENGTH, _PRISM_HALF_HEIGHT = 0.75, 0.6, 0.4  # a low tent: end on, no cone

_MISS = np.inf
_PARALLEL = 1e-12


@dataclass(frozen=True)
class Hit:
    """Ray hits: distance along each ray (inf where it misses) and the unit outward normal
    at the hit (zeros where it misses), in the coordinates the rays were given in."""

    t: np.ndarray  # [N]
    normal: np.ndarray  # [N, 3]

    @property
    def mask(self) -> np.ndarray:
        return np.isfinite(self.t)


@dataclass(frozen=True)
class Quadric:
    """The region a . p^2 + b . p + c <= 0 (componentwise squares): spheres, cylinders, cones."""

    a: tuple[float, float, float]
    b: tuple[float, float, float]
    c: float

    def value(self, p: np.ndarray) -> np.ndarray:
        return (p * p) @ np.asarray(self.a) + p @ np.asarray(self.b) + self.c

    def gradient(self, p: np.ndarray) -> np.ndarray:
        return 2 * p * np.asarray(self.a) + np.asarray(self.b)


@dataclass(frozen=True)
class ConvexSolid:
    """Intersection of half-spaces n . p <= d (rows of `planes`: nx, ny, nz, d with n of
    unit length) and optionally one quadric region. A cone's quadric is a double cone; the
    plane through its apex keeps the lower nappe, which is what makes the region convex."""

    name: str
    planes: tuple[tuple[float, float, float, float], ...]
    quadric: Quadric | None
    volume: float  # analytic
    symmetry: float  # the solid looks the same turned by this angle about z (0: by any angle)
    bound: float  # radius of a ball about the origin that holds the solid

    def inside(self, p: np.ndarray) -> np.ndarray:
        """[..., 3] points -> [...] bool."""
        ok = np.ones(p.shape[:-1], dtype=bool)
        if self.planes:
            planes = np.asarray(self.planes)
            ok &= ((p @ planes[:, :3].T) <= planes[:, 3]).all(axis=-1)
        if self.quadric is not None:
            ok &= self.quadric.value(p) <= 0
        return ok

    def intersect(self, origins: np.ndarray, directions: np.ndarray) -> Hit:
        """First hit of rays o + t d (t > 0) from outside the solid: [N, 3] each."""
        n = len(origins)
        lo = np.full(n, -np.inf)
        hi = np.full(n, np.inf)
        lo_normal = np.zeros((n, 3))
        if self.planes:
            planes = np.asarray(self.planes)
            normals, offsets = planes[:, :3], planes[:, 3]
            along = directions @ normals.T  # [N, P]
            gap = offsets - origins @ normals.T  # inside where along * t <= gap
            with np.errstate(divide="ignore", invalid="ignore"):
                t = gap / along
            parallel = np.abs(along) < _PARALLEL
            entering = along < 0
            enter_t = np.where(entering & ~parallel, t, -np.inf)
            exit_t = np.where(~entering & ~parallel, t, np.inf)
            exit_t = np.where(parallel & (gap < 0), -np.inf, exit_t)  # parallel and outside: never inside
            which = enter_t.argmax(axis=1)
            lo = enter_t[np.arange(n), which]
            hi = exit_t.min(axis=1)
            lo_normal = normals[which]
        if self.quadric is None:
            t_hit, normal = np.where(lo <= hi, lo, np.inf), lo_normal
        else:
            t_hit, normal = self._with_quadric(origins, directions, lo, hi, lo_normal)
        hit = np.isfinite(t_hit) & (t_hit > 0)
        return Hit(t=np.where(hit, t_hit, _MISS), normal=np.where(hit[:, None], normal, 0.0))

    def _with_quadric(self, o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                      lo_normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Entry into (planes' interval [lo, hi]) intersected with the quadric region, which
        along a ray is an interval or, when its t^2 term is negative, two half-lines."""
        q = self.quadric
        a, b = np.asarray(q.a), np.asarray(q.b)
        qa = (d * d) @ a
        qb = 2 * (o * d) @ a + d @ b
        qc = (o * o) @ a + o @ b + q.c
        disc = qb * qb - 4 * qa * qc
        root = np.sqrt(np.maximum(disc, 0.0))
        flat = np.abs(qa) < 1e-12
        safe_a = np.where(flat, 1.0, qa)
        r1 = (-qb - root) / (2 * safe_a)
        r2 = (-qb + root) / (2 * safe_a)
        t1, t2 = np.minimum(r1, r2), np.maximum(r1, r2)
        # Pieces of the ray inside the quadric: [p1_lo, p1_hi] and [p2_lo, p2_hi] (possibly empty).
        p1_lo, p1_hi = np.full_like(qa, np.inf), np.full_like(qa, -np.inf)
        p2_lo, p2_hi = p1_lo.copy(), p1_hi.copy()
        bowl = (qa > 0) & ~flat & (disc >= 0)
        p1_lo[bowl], p1_hi[bowl] = t1[bowl], t2[bowl]
        saddle = (qa < 0) & ~flat
        everywhere = saddle & (disc < 0)
        p1_lo[everywhere], p1_hi[everywhere] = -np.inf, np.inf
        split = saddle & (disc >= 0)
        p1_lo[split], p1_hi[split] = -np.inf, t1[split]
        p2_lo[split], p2_hi[split] = t2[split], np.inf
        with np.errstate(divide="ignore", invalid="ignore"):
            linear_root = -qc / qb
        linear = flat & (np.abs(qb) > _PARALLEL)
        rising = linear & (qb > 0)
        falling = linear & (qb < 0)
        p1_lo[rising], p1_hi[rising] = -np.inf, linear_root[rising]
        p1_lo[falling], p1_hi[falling] = linear_root[falling], np.inf
        constant_inside = flat & ~linear & (qc <= 0)
        p1_lo[constant_inside], p1_hi[constant_inside] = -np.inf, np.inf

        best_t = np.full_like(qa, np.inf)
        from_quadric = np.zeros(len(qa), dtype=bool)
        for piece_lo, piece_hi in ((p2_lo, p2_hi), (p1_lo, p1_hi)):  # the earlier piece wins: try it last
            start = np.maximum(lo, piece_lo)
            end = np.minimum(hi, piece_hi)
            ok = (start <= end) & (end > 0) & np.isfinite(start)
            best_t = np.where(ok, start, best_t)
            from_quadric = np.where(ok, piece_lo > lo, from_quadric)
        points = o + np.where(np.isfinite(best_t), best_t, 0.0)[:, None] * d
        grad = q.gradient(points)
        grad /= np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-12)
        normal = np.where(from_quadric[:, None], grad, lo_normal)
        return best_t, normal


@dataclass(frozen=True)
class Torus:
    """A ring lying flat (axis z): points within `minor` of the circle of radius `major`."""

    name: str
    major: float
    minor: float
    volume: float
    symmetry: float = 0.0
    steps: int = 96
    tolerance: float = 1e-4

    @property
    def bound(self) -> float:
        """Radius of a ball about the origin that holds the solid."""
        return self.major + self.minor

    def distance(self, p: np.ndarray) -> np.ndarray:
        """Exact signed distance to the surface."""
        rho = np.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2)
        return np.sqrt((rho - self.major) ** 2 + p[..., 2] ** 2) - self.minor

    def inside(self, p: np.ndarray) -> np.ndarray:
        rho = np.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2)
        return (rho - self.major) ** 2 + p[..., 2] ** 2 <= self.minor ** 2

    def intersect(self, origins: np.ndarray, directions: np.ndarray) -> Hit:
        n = len(origins)
        scale = np.linalg.norm(directions, axis=1)
        unit = directions / scale[:, None]
        # Start on the bounding sphere; distances below are along unit directions.
        bound = self.bound
        half_b = (origins * unit).sum(1)
        c = (origins * origins).sum(1) - bound * bound
        disc = half_b * half_b - c
        active = np.nonzero(disc > 0)[0]
        s = -half_b[active] - np.sqrt(disc[active])
        s_end = -half_b[active] + np.sqrt(disc[active])
        s = np.maximum(s, 0.0)
        found = np.full(n, np.inf)
        for _ in range(self.steps):
            if not len(active):
                break
            points = origins[active] + s[:, None] * unit[active]
            gap = self.distance(points)
            done = gap < self.tolerance
            found[active[done]] = s[done]
            keep = ~done & (s + gap < s_end)
            active, s, s_end = active[keep], (s + gap)[keep], s_end[keep]
        hit = np.isfinite(found)
        points = origins + np.where(hit, found, 0.0)[:, None] * unit
        rho = np.maximum(np.sqrt(points[:, 0] ** 2 + points[:, 1] ** 2), 1e-12)
        ring = np.stack([points[:, 0] * self.major / rho, points[:, 1] * self.major / rho,
                         np.zeros(n)], axis=1)
        normal = points - ring
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
        return Hit(t=np.where(hit, found / scale, _MISS), normal=np.where(hit[:, None], normal, 0.0))


Primitive = ConvexSolid | Torus


def _plane(nx: float, ny: float, nz: float, d: float) -> tuple[float, float, float, float]:
    length = math.sqrt(nx * nx + ny * ny + nz * nz)
    return (nx / length, ny / length, nz / length, d / length)


def _slab(axis: int, half: float) -> tuple[tuple[float, float, float, float], ...]:
    unit = [0.0, 0.0, 0.0]
    unit[axis] = 1.0
    return (_plane(*unit, half), _plane(*(-u for u in unit), half))


def _pyramid() -> ConvexSolid:
    a, h = _PYRAMID_HALF_BASE, _PYRAMID_HALF_HEIGHT
    rise = 2 * h  # base at -h, apex at +h; side plane through the apex and a base edge
    sides = tuple(_plane(sx * rise, sy * rise, a, a * h) for sx, sy in ((1, 0), (-1, 0), (0, 1), (0, -1)))
    return ConvexSolid("pyramid", sides + (_plane(0, 0, -1, h),), None,
                       volume=(2 * a) ** 2 * 2 * h / 3, symmetry=math.pi / 2,
                       bound=math.hypot(a * math.sqrt(2), h))


def _octahedron() -> ConvexSolid:
    a, c = _OCTAHEDRON_HALF_WIDTH, _OCTAHEDRON_HALF_HEIGHT
    faces = tuple(_plane(sx / a, sy / a, sz / c, 1.0) for sx in (1, -1) for sy in (1, -1) for sz in (1, -1))
    return ConvexSolid("octahedron", faces, None, volume=4 / 3 * a * a * c, symmetry=math.pi / 2,
                       bound=max(a, c))


def _prism() -> ConvexSolid:
    a, length, h = _PRISM_HALF_BASE, _PRISM_HALF_LENGTH, _PRISM_HALF_HEIGHT
    rise = 2 * h  # triangle in the x-z plane, ridge along y
    faces = (_plane(rise, 0, a, a * h), _plane(-rise, 0, a, a * h), _plane(0, 0, -1, h)) + _slab(1, length)
    return ConvexSolid("prism", faces, None, volume=(2 * a) * (2 * h) / 2 * 2 * length, symmetry=math.pi,
                       bound=math.sqrt(a * a + length * length + h * h))


def _cone() -> ConvexSolid:
    r, h = _CONE_RADIUS, _CONE_HALF_HEIGHT
    k2 = (r / (2 * h)) ** 2  # radius shrinks by r over the height 2h, apex at z = h
    quadric = Quadric(a=(1.0, 1.0, -k2), b=(0.0, 0.0, 2 * k2 * h), c=-k2 * h * h)
    return ConvexSolid("cone", _slab(2, h), quadric, volume=math.pi * r * r * 2 * h / 3, symmetry=0.0,
                       bound=math.hypot(r, h))


@cache
def primitive(shape: str) -> Primitive:
    """The solid of a shape name (one of SHAPES_3D), in its unit pose."""
    if shape == "sphere":
        r = _SPHERE_RADIUS
        return ConvexSolid("sphere", (), Quadric((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), -r * r),
                           volume=4 / 3 * math.pi * r ** 3, symmetry=0.0, bound=r)
    if shape == "cube":
        s = _CUBE_HALF
        return ConvexSolid("cube", _slab(0, s) + _slab(1, s) + _slab(2, s), None, volume=(2 * s) ** 3,
                           symmetry=math.pi / 2, bound=s * math.sqrt(3))
    if shape == "cylinder":
        r, h = _CYLINDER_RADIUS, _CYLINDER_HALF_HEIGHT
        return ConvexSolid("cylinder", _slab(2, h), Quadric((1.0, 1.0, 0.0), (0.0, 0.0, 0.0), -r * r),
                           volume=math.pi * r * r * 2 * h, symmetry=0.0,
                           bound=math.hypot(r, h))
    if shape == "cone":
        return _cone()
    if shape == "torus":
        return Torus("torus", _TORUS_MAJOR, _TORUS_MINOR, volume=2 * math.pi ** 2 * _TORUS_MAJOR * _TORUS_MINOR ** 2)
    if shape == "pyramid":
        return _pyramid()
    if shape == "octahedron":
        return _octahedron()
    if shape == "prism":
        return _prism()
    raise ValueError(f"unknown 3D shape {shape!r}; expected one of {', '.join(SHAPES_3D)}")
