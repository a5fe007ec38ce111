"""WebDataset tar shards as a training source, read by index.

A WebDataset shard is a plain tar in which the files of one sample share a key: everything before
the first dot of the file name ("images/0042.jpg" and "images/0042.txt" are sample "images/0042",
with extensions "jpg" and "txt"). The `webdataset` package streams shards in order; the trainer
instead addresses example i of a global batch directly (so ranks, workers and resumed runs agree
with nothing but the step count), so this module indexes every member's data offset once with the
standard library's tarfile and reads each sample with one seek.
"""

from __future__ import annotations

import glob
import io
import json
import logging
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from atelier.train.data import Example, FiniteSource, load_square

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp")
CAPTION_EXTENSIONS = ("txt", "caption", "text")
CAPTION_JSON_FIELDS = ("caption", "text", "prompt")
_BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Member:
    shard: int   # index into TarSource.shards
    offset: int  # where the member's data starts in the tar file
    size: int


@dataclass(frozen=True)
class ShardSample:
    key: str
    image: Member
    image_extension: str
    caption: Member
    caption_extension: str


def is_shard_spec(data: str) -> bool:
    """Whether --data names tar shards rather than a folder of images."""
    if data.endswith(".tar") or _BRACES.search(data) or glob.has_magic(data):
        return True
    folder = Path(data)
    return folder.is_dir() and any(folder.glob("*.tar")) and not any(
        p.suffix.lower() == ".txt" for p in folder.iterdir())


def expand(spec: str) -> list[Path]:
    """Shard paths of a spec: a .tar file, "name-{000..015}.tar" (zero padding kept, as in
    WebDataset's brace notation), a glob, or a folder of .tar files; sorted, duplicates refused."""
    folder = Path(spec)
    if folder.is_dir():
        return sorted(folder.glob("*.tar"))
    match = _BRACES.search(spec)
    if match:
        first, last = match.group(1), match.group(2)
        if int(last) < int(first):
            raise ValueError(f"--data {spec}: the range {{{first}..{last}}} runs backwards")
        width = len(first)
        names = [spec[:match.start()] + f"{i:0{width}d}" + spec[match.end():] for i in range(int(first), int(last) + 1)]
        return [path for name in names for path in expand(name)]
    if glob.has_magic(spec):
        return sorted(Path(p) for p in glob.glob(spec))
    return [Path(spec)]


def split_name(name: str) -> tuple[str, str]:
    """WebDataset's key and extension of a member name: "a/b.seg.png" -> ("a/b", "seg.png")."""
    directory, _, base = name.rpartition("/")
    stem, dot, extension = base.partition(".")
    return (f"{directory}/{stem}" if directory else stem), (extension.lower() if dot else "")


def index_shard(path: Path, shard: int) -> tuple[dict[str, dict[str, Member]], str | None]:
    """Every regular member of one shard grouped by key, and why reading stopped early, if it did:
    members read before a truncated or corrupt stretch are kept."""
    samples: dict[str, dict[str, Member]] = {}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if member.isfile():
                    key, extension = split_name(member.name)
                    samples.setdefault(key, {})[extension] = Member(shard, member.offset_data, member.size)
    except (tarfile.TarError, EOFError, OSError) as error:
        return samples, f"{type(error).__name__}: {error}"
    return samples, None


class TarSource(FiniteSource):
    """Samples of WebDataset shards that have an image and a caption (.txt, or .json with a
    "caption", "text" or "prompt" field). Compressed shards (.tar.gz) cannot be read by seeking and
    are refused; a truncated shard contributes the samples before the damage, with a warning."""

    def __init__(self, spec: str, size: int, seed: int):
        self.root, self.size, self.seed = Path(spec), size, seed
        self.shards = expand(spec)
        missing = [str(p) for p in self.shards if not p.is_file()]
        if not self.shards or missing:
            raise ValueError(f"--data {spec}: no such shard {', '.join(missing[:3]) or '(the pattern matched none)'}")
        self.samples: list[ShardSample] = []
        self.uncaptioned = 0
        self.damaged: list[str] = []
        for number, path in enumerate(self.shards):
            if _compressed(path):
                raise ValueError(f"--data {spec}: {path} is a compressed tar; WebDataset shards are read by seeking, "
                                 f"so store them uncompressed (tar cf, not tar czf)")
            grouped, damage = index_shard(path, number)
            if damage:
                log.warning("shard %s is damaged after %d samples (%s); using those", path, len(grouped), damage)
                self.damaged.append(str(path))
            for key, members in grouped.items():
                sample = _pair(key, members)
                if sample is None:
                    self.uncaptioned += any(e in members for e in IMAGE_EXTENSIONS)
                else:
                    self.samples.append(sample)
        if not self.samples:
            raise ValueError(f"--data {spec}: {len(self.shards)} shard(s) hold no sample with both an image "
                             f"({', '.join(IMAGE_EXTENSIONS)}) and a caption ({', '.join(CAPTION_EXTENSIONS)} or json)")

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, position: int) -> Example:
        sample = self.samples[position]
        caption = self._bytes(sample.caption).decode("utf-8")
        if sample.caption_extension == "json":
            fields = json.loads(caption)
            found = [f for f in CAPTION_JSON_FIELDS if isinstance(fields, dict) and f in fields]
            if not found:
                raise ValueError(f"its json has none of the caption fields {', '.join(CAPTION_JSON_FIELDS)}")
            caption = str(fields[found[0]])
        image = load_square(io.BytesIO(self._bytes(sample.image)), self.size)
        return Example(image, caption.strip(), key=f"{self.shards[sample.image.shard].name}/{sample.key}")

    def name(self, position: int) -> str:
        sample = self.samples[position]
        return f"{self.shards[sample.image.shard]}:{sample.key}.{sample.image_extension}"

    def _bytes(self, member: Member) -> bytes:
        with open(self.shards[member.shard], "rb") as file:
            file.seek(member.offset)
            data = file.read(member.size)
        if len(data) != member.size:
            raise ValueError(f"the shard ends {member.size - len(data)} bytes early")
        return data

    def describe(self) -> str:
        extra = f", {self.uncaptioned} images without captions ignored" if self.uncaptioned else ""
        extra += f", {len(self.damaged)} damaged shard(s) read up to the damage" if self.damaged else ""
        return f"{len(self.samples)} captioned images in {len(self.shards)} WebDataset shard(s) {self.root}{extra}"


def _pair(key: str, members: dict[str, Member]) -> ShardSample | None:
    image = next((e for e in IMAGE_EXTENSIONS if e in members), None)
    caption = next((e for e in CAPTION_EXTENSIONS if e in members), None)
    if caption is None and "json" in members:
        caption = "json"
    if image is None or caption is None:
        return None
    return ShardSample(key, members[image], image, members[caption], caption)


def _compressed(path: Path) -> bool:
    with open(path, "rb") as file:
        magic = file.read(3)
    return magic[:2] == b"\x1f\x8b" or magic == b"BZh" or magic[:3] == b"\xfd7z"
