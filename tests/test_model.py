"""The space-time transformer: shapes per task, keep-mask, RoPE, memory, presets, folders."""

import json
from dataclasses import replace

import pytest
import torch

from atelier.folder import FolderError
from atelier.model.config import PRESETS, ModelConfig, preset
from atelier.model.embed import camera_vector
from atelier.model.info import model_info
from atelier.model.memory import ProductKeyMemory, SlotUsage
from atelier.model.rope import apply_rope, rope_table
from atelier.model.transformer import SpaceTimeTransformer

MICRO = ModelConfig(latent_channels=4, width=48, depth=2, heads=2, memory_blocks=(1,), memory_keys=8,
                    memory_topk=4, memory_heads=2, memory_key_dim=16, text_dim=16, camera_dim=8)


def randomised(config: ModelConfig = MICRO, seed: int = 0) -> SpaceTimeTransformer:
    """A model whose zero-initialised gates are opened, so every input reaches the output."""
    torch.manual_seed(seed)
    model = SpaceTimeTransformer(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def text(batch: int, length: int = 5, dim: int = 16, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(batch, length, dim, generator=generator)
    mask = torch.ones(batch, length, dtype=torch.bool)
    return tokens, mask, torch.randn(batch, dim, generator=generator)


def canvas(*shape, seed: int = 2):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model():
    return randomised()


def test_fresh_model_predicts_zero_velocity():
    """adaLN-Zero: every block starts as the identity and the output layer at zero (DiT)."""
    fresh = SpaceTimeTransformer(MICRO)
    out = fresh(canvas(2, 1, 4, 8, 8), torch.rand(2), *text(2))
    assert out.shape == (2, 1, 4, 8, 8) and torch.count_nonzero(out) == 0


@pytest.mark.parametrize("frames,height,width", [(1, 8, 8), (4, 8, 12), (3, 12, 8)])
def test_shapes_for_images_clips_and_views(model, frames, height, width):
    x = canvas(2, frames, 4, height, width)
    t = torch.rand(2, frames)
    camera = camera_vector(torch.rand(2, frames) * 6.28, torch.rand(2, frames) - 0.5)
    out = model(x, t, *text(2), camera=camera)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_factorised_attention_runs_and_mixes_frames():
    factorised = randomised(replace(MICRO, attention="factorised", depth=2, memory_blocks=()))
    x = canvas(1, 4, 4, 8, 8)
    base = factorised(x, torch.full((1,), 0.5), *text(1))
    changed = x.clone()
    changed[:, 0] += 1.0
    moved = factorised(changed, torch.full((1,), 0.5), *text(1))
    assert base.shape == x.shape
    assert (moved[:, 3] - base[:, 3]).abs().max() > 1e-4, "the temporal blocks must carry frame 0 to frame 3"


def test_frames_see_each_other_and_cameras_matter(model):
    x = canvas(1, 3, 4, 8, 8)
    t = torch.full((1,), 0.7)
    base = model(x, t, *text(1))
    changed = x.clone()
    changed[:, 0] += 1.0
    assert (model(changed, t, *text(1))[:, 2] - base[:, 2]).abs().max() > 1e-4
    camera = camera_vector(torch.tensor([[0.0, 1.0, 2.0]]), torch.zeros(1, 3))
    other = camera_vector(torch.tensor([[0.0, 1.0, 3.0]]), torch.zeros(1, 3))
    with_camera, with_other = model(x, t, *text(1), camera=camera), model(x, t, *text(1), camera=other)
    assert (with_camera[:, 2] - with_other[:, 2]).abs().max() > 1e-4


def test_keep_mask_reads_context_only_where_kept(model):
    x = canvas(1, 1, 4, 8, 8)
    keep = torch.zeros(1, 1, 1, 8, 8)
    keep[..., :, :4] = 1
    context = canvas(1, 1, 4, 8, 8, seed=5)
    t = torch.full((1,), 0.5)
    base = model(x, t, *text(1), keep_mask=keep, context=context)
    outside = context.clone()
    outside[..., :, 4:] += 3.0      # where keep_mask is 0 the context is unknown and must be ignored
    assert torch.allclose(model(x, t, *text(1), keep_mask=keep, context=outside), base, atol=1e-6)
    inside = context.clone()
    inside[..., :, :4] += 3.0
    assert (model(x, t, *text(1), keep_mask=keep, context=inside) - base).abs().max() > 1e-4
    no_mask = model(x, t, *text(1))
    assert (no_mask - base).abs().max() > 1e-4, "the keep-mask channel must reach the model"


def test_text_padding_and_batch_neighbours_do_not_leak(model):
    x = canvas(2, 1, 4, 8, 8)
    t = torch.tensor([0.3, 0.8])
    tokens, mask, pooled = text(2)
    padded_tokens = torch.cat([tokens, torch.randn(2, 3, 16)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], dim=1)
    both = model(x, t, padded_tokens, padded_mask, pooled)
    assert torch.allclose(both, model(x, t, tokens, mask, pooled), atol=1e-5)
    alone = model(x[:1], t[:1], tokens[:1], mask[:1], pooled[:1])
    assert torch.allclose(both[:1], alone, atol=1e-5)


def test_in_eval_mode_a_sample_gets_the_same_bits_in_any_batch(model):
    """What lets `atelier generate --from` remake an image exactly (atelier.model.rowlinear); a
    16x16 latent gives each sample the 64 token rows the per-token layers need."""
    x = canvas(5, 1, 4, 16, 16)
    t = torch.tensor([0.3, 0.8, 0.5, 0.1, 0.9])
    tokens, mask, pooled = text(5)
    with torch.no_grad():
        batch = model(x, t, tokens, mask, pooled)
        for row in (0, 3):
            alone = model(x[row:row + 1], t[row:row + 1], tokens[row:row + 1], mask[row:row + 1], pooled[row:row + 1])
            assert torch.equal(batch[row:row + 1], alone)


def test_dropped_text_ignores_the_caption(model):
    x = canvas(1, 1, 4, 8, 8)
    t = torch.full((1,), 0.5)
    drop = torch.tensor([True])
    first = model(x, t, *text(1, seed=1), drop_text=drop)
    second = model(x, t, *text(1, length=7, seed=9), drop_text=drop)
    assert torch.allclose(first, second, atol=1e-6)
    assert (model(x, t, *text(1, seed=1)) - first).abs().max() > 1e-4


def test_rope_depends_only_on_relative_position():
    dims = (4, 6, 6)
    cos, sin = rope_table(2, 5, 7, dims, 10000.0)
    q, k = torch.randn(16), torch.randn(16)

    def score(i, j):
        return (apply_rope(q[None], cos[i:i + 1], sin[i:i + 1]) * apply_rope(k[None], cos[j:j + 1], sin[j:j + 1])).sum()

    def index(f, y, x):
        return (f * 5 + y) * 7 + x

    assert torch.isclose(score(index(0, 1, 2), index(1, 3, 3)), score(index(0, 2, 4), index(1, 4, 5)), atol=1e-5)
    assert not torch.isclose(score(index(0, 1, 2), index(1, 3, 3)), score(index(0, 1, 2), index(0, 3, 3)), atol=1e-3)


def test_two_resolutions_share_weights(model):
    """RoPE has no table of positions to outgrow: the same model runs at 8x8 and 16x24 latents."""
    for height, width in [(8, 8), (16, 24)]:
        out = model(canvas(1, 1, 4, height, width), torch.full((1,), 0.5), *text(1))
        assert out.shape == (1, 1, 4, height, width) and torch.isfinite(out).all()


def test_product_key_memory_finds_the_true_top_k():
    torch.manual_seed(0)
    memory = ProductKeyMemory(width=16, keys=6, topk=3, heads=1, key_dim=8)
    x = torch.randn(5, 16)
    query = memory.query_norm(memory.query(x).unflatten(-1, (1, 2, -1)))[:, 0]     # [T, 2, 4]
    first = query[:, 0] @ memory.sub_keys[0, 0].T                                  # [T, 6]
    second = query[:, 1] @ memory.sub_keys[0, 1].T
    every_slot = (first[:, :, None] + second[:, None, :]).flatten(1)               # [T, 36]
    best, rows = every_slot.topk(3, dim=-1)
    expected_read = (best.softmax(-1)[..., None] * memory.values.weight[rows]).sum(1)
    expected = memory.out(expected_read * torch.nn.functional.silu(memory.gate(x)))
    assert torch.allclose(memory(x), expected, atol=1e-5)


def test_memory_reads_and_updates_few_slots():
    torch.manual_seed(0)
    memory = ProductKeyMemory(width=16, keys=32, topk=4, heads=2, key_dim=8)
    memory(torch.randn(3, 16)).sum().backward()
    touched = (memory.values.weight.grad.abs().sum(1) > 0).sum().item()
    assert 0 < touched <= 3 * 2 * 4 < 32 * 32


def test_slot_usage_measures_how_widely_the_memory_is_read():
    torch.manual_seed(0)
    memory = ProductKeyMemory(width=16, keys=8, topk=2, heads=1, key_dim=8)
    one_token = torch.randn(1, 16).expand(50, 16)
    plain = memory(one_token)
    with SlotUsage(memory) as usage:
        recorded = memory(one_token)
    assert torch.equal(plain, recorded) and not memory._forward_hooks
    (same,) = usage.summary()
    assert same["slots"] == 64 and same["read"] == 2 / 64 and same["perplexity"] <= 2 / 64 + 1e-9
    with SlotUsage(memory) as usage:
        memory(torch.randn(400, 16))
    (varied,) = usage.summary()
    assert varied["read"] > 0.5 and 2 / 64 < varied["perplexity"] <= varied["read"]


def test_slot_usage_of_a_model_has_a_line_per_memory_layer(model):
    with SlotUsage(model) as usage:
        model(canvas(2, 1, 4, 8, 8), torch.full((2,), 0.5), *text(2))
    (layer,) = usage.summary()
    assert layer["slots"] == 8 * 8 and 0 < layer["read"] <= 1
    assert SlotUsage(randomised(replace(MICRO, memory_blocks=()))).summary() == []


def test_memory_values_are_their_own_parameter_group(model):
    values = model.memory_value_parameters()
    assert len(values) == 1 and values[0].shape == (8 * 8, 48)


def test_gradient_checkpointing_gives_the_same_gradients():
    def gradients(checkpointing):
        net = randomised()
        net.train()
        net.gradient_checkpointing = checkpointing
        t = torch.rand(2, generator=torch.Generator().manual_seed(0))
        net(canvas(2, 2, 4, 8, 8), t, *text(2)).square().sum().backward()
        return torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])

    assert torch.allclose(gradients(False), gradients(True), atol=1e-5)


def test_bad_inputs_are_named(model):
    with pytest.raises(ValueError, match=r"\[B, F, C, h, w\]"):
        model(torch.zeros(1, 4, 8, 8), torch.zeros(1), *text(1))
    with pytest.raises(ValueError, match="channels"):
        model(torch.zeros(1, 1, 3, 8, 8), torch.zeros(1), *text(1))
    with pytest.raises(ValueError, match="patch size"):
        model(torch.zeros(1, 1, 4, 7, 8), torch.zeros(1), *text(1))
    with pytest.raises(ValueError, match="unknown model preset 'huge'.*tiny"):
        preset("huge")
    with pytest.raises(ValueError, match="not divisible by heads"):
        ModelConfig(width=50, heads=3)
    with pytest.raises(ValueError, match="memory_blocks"):
        ModelConfig(depth=2, memory_blocks=(5,))


def test_save_and_load_round_trip(model, tmp_path):
    model.save(tmp_path / "m")
    loaded = SpaceTimeTransformer.from_pretrained(tmp_path / "m")
    x, t = canvas(1, 2, 4, 8, 8), torch.rand(1)
    assert loaded.config == model.config
    assert torch.equal(loaded(x, t, *text(1)), model(x, t, *text(1)))
    index = json.loads((tmp_path / "m" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(model.state_dict())
    on_device = SpaceTimeTransformer.from_pretrained(tmp_path / "m", device=torch.device("cpu"))  # not only "cpu"
    assert torch.equal(on_device(x, t, *text(1)), model(x, t, *text(1)))


def test_large_models_are_sharded(tmp_path):
    from atelier.folder import load_tensors, save_folder

    tensors = {"big": torch.randn(300, 100), "small": torch.randn(7)}
    save_folder(tmp_path / "m", {"kind": "test"}, tensors, max_shard_bytes=40_000)
    shards = sorted(p for p in (tmp_path / "m").iterdir() if p.suffix == ".safetensors")
    assert len(shards) >= 3 and all(p.stat().st_size <= 40_000 + 1_000 for p in shards)
    loaded = load_tensors(tmp_path / "m")
    assert all(torch.equal(loaded[name], tensors[name]) for name in tensors)


def test_corrupt_or_mismatched_folders_are_refused(model, tmp_path):
    folder = model.save(tmp_path / "m")
    shard = next(folder.glob("*.safetensors"))
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(FolderError, match="corrupt or truncated"):
        SpaceTimeTransformer.from_pretrained(folder)

    folder = model.save(tmp_path / "m")     # replaces the damaged folder atomically
    config = json.loads((folder / "config.json").read_text())
    config["model"]["width"] = 96
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(FolderError, match="wrong shape"):
        SpaceTimeTransformer.from_pretrained(folder)

    (folder / "config.json").write_text("{not json")
    with pytest.raises(FolderError, match="corrupt"):
        SpaceTimeTransformer.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({"kind": "tokenizer"}))
    with pytest.raises(FolderError, match="not 'atelier-transformer'"):
        SpaceTimeTransformer.from_pretrained(folder)
    with pytest.raises(FolderError, match="not a model folder"):
        SpaceTimeTransformer.from_pretrained(tmp_path / "nowhere")
    (folder / "model.safetensors.index.json").unlink()
    (folder / "config.json").write_text(json.dumps({"kind": "atelier-transformer", "model": MICRO.to_dict()}))
    with pytest.raises(FolderError, match="not fully written"):
        SpaceTimeTransformer.from_pretrained(folder)


def test_presets_have_their_promised_sizes():
    sizes = {name: model_info(config) for name, config in PRESETS.items()}
    assert sizes["tiny"].parameters <= 8e6
    assert 30e6 <= sizes["small"].parameters <= 40e6
    assert 115e6 <= sizes["base"].parameters <= 145e6
    assert 400e6 <= sizes["large"].parameters <= 500e6
    assert (PRESETS["xl"].depth, PRESETS["xl"].width) == (28, 1152)
    assert sizes["xxl"].parameters >= 10e9 and sizes["xxl"].memory_parameters > 0
    # Per block: 2 FLOPs per token per attention and MLP weight (12 D^2) plus QK^T and AV (4 S^2 D);
    # the adaLN weights run once per frame, not per token.
    small, config = sizes["small"], PRESETS["small"]
    tokens = small.visual_tokens + small.text_tokens
    expected = config.depth * (2 * tokens * 12 * config.width ** 2 + 4 * tokens ** 2 * config.width)
    assert 1.0 <= small.flops_per_sample / expected < 1.05
