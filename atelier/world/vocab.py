"""The world's vocabulary: the closed sets of shapes, colours, sizes, textures, regions,
relations and backgrounds, with the constants that tie them to pixels.

Everything that renders the world or reads it back (the oracle) takes its facts from here,
so the two can never disagree about what "large" or "red" means.
"""

from __future__ import annotations

SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "heart", "hexagon",
    "ring", "cross", "diamond", "crescent", "semicircle", "arrow",
)

# sRGB in 0..255, chosen to stay apart in CIELAB so that naming a colour is unambiguous.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (245, 215, 50),
    "green": (50, 160, 60),
    "blue": (40, 80, 210),
    "purple": (130, 60, 170),
    "pink": (240, 140, 190),
    "brown": (120, 75, 40),
    "black": (25, 25, 25),
    "white": (240, 240, 240),
    "gray": (128, 128, 128),
    "cyan": (40, 195, 215),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

# Object diameter (largest extent) as a fraction of the image width. The world jitters each
# object's diameter down by up to SIZE_JITTER; the oracle splits the classes at midpoints.
SIZES: dict[str, float] = {"small": 0.14, "medium": 0.20, "large": 0.27}
SIZE_NAMES: tuple[str, ...] = tuple(SIZES)
SIZE_JITTER = 0.05


def size_name(diameter: float) -> str:
    """Size class of a diameter (fraction of the width): classes split halfway between one
    class's largest diameter and the next class's smallest. The oracle reads sizes this way,
    and clips name the size of a growing object this way in every frame."""
    for smaller, larger in zip(SIZE_NAMES, SIZE_NAMES[1:]):
        if diameter < (SIZES[smaller] + SIZES[larger] * (1 - SIZE_JITTER)) / 2:
            return smaller
    return SIZE_NAMES[-1]


TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted", "outlined")
# Texture geometry in fractions of the image width, so a scene looks the same at every size.
TEXTURE_PERIOD = 1 / 12  # stripes and dot grid
STRIPE_DUTY = 0.4  # fraction of a stripe period drawn in the secondary shade
DOT_RADIUS = 0.22  # in stripe periods
OUTLINE_WIDTH = 1 / 32
# A texture needs room to be seen: small objects are always solid, thin shapes too, and
# shapes with narrow arms or points take no outline (it would cover most of them).
TEXTURED_SIZES = frozenset({"medium", "large"})
SOLID_ONLY_SHAPES = frozenset({"ring", "crescent"})
NO_OUTLINE_SHAPES = frozenset({"cross", "arrow", "star"})


def textures_for(shape: str, size: str | None = None) -> tuple[str, ...]:
    """The textures the world draws on a shape (of a size, when given)."""
    if shape in SOLID_ONLY_SHAPES or (size is not None and size not in TEXTURED_SIZES):
        return ("solid",)
    if shape in NO_OUTLINE_SHAPES:
        return tuple(t for t in TEXTURES if t != "outlined")
    return TEXTURES

# 3x3 grid of regions, row-major from the top left.
REGIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)
GRID = 3
# How far an object's centre may move from its cell's centre, as a fraction of the free room.
POSITION_JITTER = 0.2

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
INVERSE_RELATION = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
# Two centres this far apart (fraction of the width) along the relation's axis satisfy it.
RELATION_MARGIN = 0.1

BACKGROUNDS: tuple[str, ...] = ("solid", "gradient", "checkered", "stripes")
GRADIENT_DIRECTIONS: tuple[str, ...] = ("horizontal", "vertical")
PATTERN_PERIOD = 1 / 8  # checker squares and background bands, fraction of the width

COUNTS: tuple[int, ...] = (1, 2, 3, 4)
MAX_OBJECTS = 4


def _luminance(rgb: tuple[int, int, int]) -> float:
    return (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) / 255


# Textures draw a darker shade on light colours and a lighter one on dark colours; decided by
# the named colour (not the jittered one) so the oracle can always tell which.
SHADE_DARKER: dict[str, bool] = {name: _luminance(rgb) > 0.42 for name, rgb in COLOURS.items()}


def secondary_shade(rgb: tuple[float, float, float], colour: str) -> tuple[float, float, float]:
    """The shade a texture draws over an object of the named `colour` drawn as `rgb` (0..1),
    so stripes, dots and outlines are visible on every colour."""
    r, g, b = rgb
    if SHADE_DARKER[colour]:
        return (r * 0.45, g * 0.45, b * 0.45)
    return (r + (1 - r) * 0.55, g + (1 - g) * 0.55, b + (1 - b) * 0.55)


def colour_unit(name: str) -> tuple[float, float, float]:
    r, g, b = COLOURS[name]
    return (r / 255, g / 255, b / 255)


def region_of(cx: float, cy: float) -> int:
    """Region index (0..8) of a point given in fractions of the image (0..1)."""
    col = min(GRID - 1, max(0, int(cx * GRID)))
    row = min(GRID - 1, max(0, int(cy * GRID)))
    return row * GRID + col


def relation_holds(relation: str, a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether centre a stands in `relation` to centre b (fractions of the image, y down)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    if relation == "left of":
        return dx > RELATION_MARGIN
    if relation == "right of":
        return -dx > RELATION_MARGIN
    if relation == "above":
        return dy > RELATION_MARGIN
    if relation == "below":
        return -dy > RELATION_MARGIN
    raise ValueError(f"unknown relation {relation!r}; expected one of {RELATIONS}")
