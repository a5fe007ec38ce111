"""Generation metadata inside image files, so any image says how to make it again.

PNG gets AUTOMATIC1111's `parameters` text chunk (what most tools, galleries and CivitAI read) and an
`atelier` iTXt chunk holding the same as JSON. JPEG and WebP have no text chunks: the A1111 text goes
into the EXIF UserComment (as A1111 writes it) and the JSON into an XMP packet. An edit's image also
carries the area it redrew (atelier.pipeline.provenance.encode_region, from image.info[REGION_KEY]) in an
`atelier-edit-region` chunk or XMP attribute, so that its watermark can be read where it was put.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

JSON_KEY = "atelier"
REGION_KEY = "atelier-edit-region"
PARAMETERS_KEY = "parameters"
EXIF_IFD, USER_COMMENT = 0x8769, 0x9286
UNICODE_PREFIX = b"UNICODE\0"  # EXIF's character code for UTF-16 user comments (piexif writes big-endian)
XMP_NAMESPACE = "https://atelier.invalid/ns/generation/1.0/"
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


@dataclass(frozen=True)
class GenerationInfo:
    """Everything that decides a generated image, given the model's weights."""

    prompt: str
    seed: int
    steps: int
    guidance: float
    sampler: str
    size: int
    model: str
    model_hash: str
    negative_prompt: str = ""
    task: str = "text_to_image"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationInfo:
        known = {f.name for f in fields(cls)}
        missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in data]
        if missing:
            raise ValueError(f"the generation metadata lacks {', '.join(missing)}")
        return cls(**{key: value for key, value in data.items() if key in known})  # newer fields are ignored

    def parameters(self) -> str:
        """AUTOMATIC1111's layout: the prompt, the negative prompt, then one line of settings."""
        lines = [self.prompt]
        if self.negative_prompt:
            lines.append(f"Negative prompt: {self.negative_prompt}")
        lines.append(f"Steps: {self.steps}, Sampler: {self.sampler}, CFG scale: {self.guidance:g}, Seed: {self.seed}, "
                     f"Size: {self.size}x{self.size}, Model hash: {self.model_hash}, Model: {self.model}"
                     + ("" if self.task == "text_to_image" else f", Task: {self.task}"))
        return "\n".join(lines)


def save_image(image: Image.Image, path: str | Path, info: GenerationInfo, quality: int = 95) -> Path:
    """Write `image` as PNG, JPEG or WebP (by the suffix) carrying `info`."""
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: unsupported image type {path.suffix!r}; use one of {', '.join(FORMATS)}")
    data = json.dumps(info.to_dict(), ensure_ascii=False)
    if kind == "PNG":
        image.save(path, format="PNG", pnginfo=_png_chunks(image, info))
        return path
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = UNICODE_PREFIX + info.parameters().encode("utf-16-be")
    options = {"quality": quality, "exif": exif.tobytes(), "xmp": _xmp(data, image.info.get(REGION_KEY))}
    if kind == "WEBP":
        options["lossless"] = quality >= 100
    image.convert("RGB").save(path, format=kind, **options)
    return path


def png_bytes(image: Image.Image, info: GenerationInfo) -> bytes:
    """`image` as the bytes of a PNG file carrying `info`, as save_image writes it (what the server stores)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=_png_chunks(image, info))
    return buffer.getvalue()


def _png_chunks(image: Image.Image, info: GenerationInfo) -> PngInfo:
    chunks = PngInfo()
    chunks.add_text(PARAMETERS_KEY, info.parameters())
    chunks.add_itxt(JSON_KEY, json.dumps(info.to_dict(), ensure_ascii=False))
    if isinstance(region := image.info.get(REGION_KEY), str):
        chunks.add_itxt(REGION_KEY, region)
    return chunks


def read_info(path: str | Path) -> GenerationInfo | None:
    """The generation metadata of an image file, or None when it has none. A file that is not an
    image raises ValueError naming it."""
    path = Path(path)
    check_not_empty(path)
    try:
        with Image.open(path) as image:
            text_chunks = dict(getattr(image, "text", {}) or {})
            xmp = image.info.get("xmp")
            exif = image.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
    except (OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from error
    raw = text_chunks.get(JSON_KEY) or _from_xmp(xmp, "generation")
    if raw is not None:
        try:
            return GenerationInfo.from_dict(json.loads(raw))
        except (json.JSONDecodeError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: its Atelier metadata is corrupt ({error})") from error
    parameters = text_chunks.get(PARAMETERS_KEY) or _from_user_comment(exif)
    return None if parameters is None else from_parameters(parameters)


def check_not_empty(path: Path) -> None:
    """ValueError naming `path` when it is a 0-byte file: "empty" says more than "not a readable image"."""
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes)")


def read_edit_region(path: str | Path) -> str | None:
    """The edited area an edit's file records (atelier.pipeline.provenance.decode_region reads it), or None."""
    with Image.open(path) as image:
        return dict(getattr(image, "text", {}) or {}).get(REGION_KEY) or _from_xmp(image.info.get("xmp"), "editRegion")


def read_parameters(path: str | Path) -> str | None:
    """The A1111 `parameters` text of an image (ours or another tool's), or None."""
    with Image.open(path) as image:
        text = dict(getattr(image, "text", {}) or {}).get(PARAMETERS_KEY)
        return text or _from_user_comment(image.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT))


_SETTING = re.compile(r"\s*([\w ]+):\s*([^,]+)(?:,|$)")


def from_parameters(text: str) -> GenerationInfo | None:
    """Our fields back from A1111 text (for images that lost their JSON), or None if it lacks any."""
    *prompt_lines, settings_line = text.strip().split("\n")
    negative = ""
    if prompt_lines and prompt_lines[-1].startswith("Negative prompt:"):
        negative = prompt_lines.pop()[len("Negative prompt:"):].strip()
    settings = {key.strip(): value.strip() for key, value in _SETTING.findall(settings_line)}
    try:
        size = settings["Size"].split("x")
        return GenerationInfo(prompt="\n".join(prompt_lines), negative_prompt=negative, seed=int(settings["Seed"]),
                              steps=int(settings["Steps"]), guidance=float(settings["CFG scale"]),
                              sampler=settings["Sampler"], size=int(size[0]), model=settings.get("Model", ""),
                              model_hash=settings.get("Model hash", ""))
    except (KeyError, ValueError, IndexError):
        return None


def _xmp(data: str, region: str | None = None) -> bytes:
    attributes = f'atelier:generation="{_escape(data)}"'
    if isinstance(region, str):
        attributes += f' atelier:editRegion="{_escape(region)}"'
    return (f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
            f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            f'<rdf:Description rdf:about="" xmlns:atelier="{XMP_NAMESPACE}" {attributes}/>'
            f'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>').encode()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _from_xmp(xmp: bytes | str | None, attribute: str) -> str | None:
    if not xmp:
        return None
    text = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else xmp
    match = re.search(rf'atelier:{attribute}="([^"]*)"', text)
    if match is None:
        return None
    return (match.group(1).replace("&quot;", '"').replace("&gt;", ">").replace("&lt;", "<").replace("&amp;", "&"))


def _from_user_comment(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if value.startswith(UNICODE_PREFIX):
        body = value[len(UNICODE_PREFIX):]
        return body.decode("utf-16-le" if body[:1] != b"\0" and body[1:2] == b"\0" else "utf-16-be", "replace")
    if value.startswith(b"ASCII\0\0\0"):
        return value[8:].decode("ascii", "replace")
    return value.decode("utf-8", "replace")


def save_numbered(images: list[Image.Image], folder: str | Path, suffix: str = ".png") -> list[Path]:
    """Save generated images as NNNNN-SEED.ext, numbering on from the highest number already in
    `folder`, so a second run never overwrites the first (AUTOMATIC1111's naming)."""
    folder = Path(folder)
    if suffix.lower() not in FORMATS:
        raise ValueError(f"unsupported image type {suffix!r}; use one of {', '.join(FORMATS)}")
    folder.mkdir(parents=True, exist_ok=True)
    taken = [int(match.group(1)) for p in folder.iterdir() if (match := re.match(r"(\d{5,})-", p.name))]
    number = max(taken, default=-1) + 1
    paths = []
    for image in images:
        info = image.info.get(JSON_KEY)
        if not isinstance(info, GenerationInfo):
            raise ValueError("only images made by Atelier (with their GenerationInfo) can be saved this way")
        path = folder / f"{number:05d}-{info.seed}{suffix.lower()}"
        with open(path, "xb"):   # claim the name: fails rather than overwrite if another run took it
            pass
        paths.append(save_image(image, path, info))
        number += 1
    return paths
