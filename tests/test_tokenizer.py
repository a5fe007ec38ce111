"""The visual tokenizer: shapes, the CoT block, normalisation, model folders, training and the CLI."""

import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from atelier.cli import main
from atelier.folder import FolderError
from atelier.tokenizer import PRESETS, Autoencoder, TokenizerConfig, preset
from atelier.tokenizer.cot import CoTAttention, local_aggregate
from atelier.tokenizer.loss import psnr_per_image
from atelier.tokenizer.transformer import attend
from atelier.train.tokenizer import start_run, train_step, world_images

TINY = PRESETS["tiny"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and on a busy machine two threads contend
    badly (a step can take 10x longer); restore the count afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
TINY_8X = replace(TINY, downsample=8, widths=(8, 16, 16, 16), blocks=(0, 0, 1, 1),
                  decoder_widths=(8, 16, 16, 16), decoder_blocks=(0, 0, 1, 1))


def params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_for(config: TokenizerConfig, seed: int = 0) -> Autoencoder:
    torch.manual_seed(seed)
    return Autoencoder(config).eval()


@pytest.mark.parametrize("config", [TINY, PRESETS["tiny-conv"], TINY_8X], ids=["cot-4x", "conv-4x", "cot-8x"])
@pytest.mark.parametrize("size", [(32, 32), (48, 64)])
def test_encode_decode_shapes_for_images_and_clips(config, size):
    model = model_for(config)
    d, c = config.downsample, config.latent_channels
    height, width = size
    images = torch.rand(2, 3, height, width) * 2 - 1
    latents = model.encode(images)
    assert latents.shape == (2, c, height // d, width // d)
    assert model.decode(latents).shape == images.shape
    # A clip (or a set of views) folds its frames into the batch and back, frame by frame.
    clip = torch.rand(2, 3, 3, height, width) * 2 - 1
    clip_latents = model.encode(clip)
    assert clip_latents.shape == (2, 3, c, height // d, width // d)
    torch.testing.assert_close(clip_latents[1, 2], model.encode(clip[1, 2:3])[0], atol=1e-5, rtol=1e-5)
    decoded = model.decode(clip_latents)
    assert decoded.shape == clip.shape and decoded.min() >= -1 and decoded.max() <= 1


def test_bad_inputs_fail_clearly():
    model = model_for(TINY)
    with pytest.raises(ValueError, match="multiples of the tokenizer's downsample factor 4, got 30x32"):
        model.encode(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"images must be \[B, 3, H, W\] or \[B, F, 3, H, W\], got \(1, 4, 32, 32\)"):
        model.encode(torch.zeros(1, 4, 32, 32))
    with pytest.raises(ValueError, match="floating point"):
        model.encode(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"latents must be \[B, 4, H, W\]"):
        model.decode(torch.zeros(1, 8, 8, 8))


def test_cot_block_sees_its_neighbours():
    torch.manual_seed(0)
    cot = CoTAttention(16, heads=4, groups=4, norm_groups=4).eval()
    x = torch.randn(2, 16, 32, 32)
    out = cot(x)
    assert out.shape == x.shape
    poked = x.clone()
    poked[:, :, 16, 16] += 3.0
    change = (cot(poked) - out).abs().sum(dim=(0, 1))  # [32, 32]
    rows, cols = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    distance = torch.maximum((rows - 16).abs(), (cols - 16).abs())
    neighbours, far = change[distance == 1], change[distance >= 3]
    # The 3x3 static context and the 3x3 dynamic kernel reach two pixels; beyond that a pixel moves
    # only through image-wide statistics (GroupNorm and the split-attention gate).
    assert neighbours.min() > 10 * far.max()
    assert far.max() > 0


def test_local_aggregation_is_a_per_pixel_3x3_convolution():
    torch.manual_seed(0)
    values = torch.randn(2, 8, 5, 7)
    weights = torch.randn(2, 2, 1, 9, 5, 7)
    patches = F.unfold(values, 3, padding=1).view(2, 2, 4, 9, 5, 7)  # [B, heads, C / heads, 9, H, W]
    expected = (patches * weights).sum(dim=3).reshape(2, 8, 5, 7)
    torch.testing.assert_close(local_aggregate(values, weights, 3), expected)


def test_written_out_attention_matches_sdpa():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 2, 10, 8)
    with torch.enable_grad():
        written_out = attend(q, k, v)
    with torch.no_grad():
        fused = attend(q, k, v)
    torch.testing.assert_close(written_out, fused, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pair", [("cot-4x", "conv-4x"), ("cot-8x", "conv-8x"), ("tiny", "tiny-conv")])
def test_cot_and_conv_presets_have_the_same_size(pair):
    cot, conv = (params(Autoencoder(PRESETS[name])) for name in pair)
    assert abs(cot - conv) / cot < 0.03, (cot, conv)
    assert PRESETS[pair[0]].encoder == "cot" and PRESETS[pair[1]].encoder == "conv"


def test_presets_and_configs_validate_clearly():
    assert preset("cot-4x") == TokenizerConfig()
    assert PRESETS["cot-4x"].downsample == 4 and PRESETS["cot-8x"].downsample == 8
    with pytest.raises(ValueError, match="unknown tokenizer preset 'cot-16x'; choices: cot-4x, "):
        preset("cot-16x")
    with pytest.raises(ValueError, match="downsample must be one of 4, 8, got 2"):
        TokenizerConfig(downsample=2)
    with pytest.raises(ValueError, match="widths needs 4 entries for 8x downsampling"):
        TokenizerConfig(downsample=8)
    with pytest.raises(ValueError, match="latent_shift needs one value per latent channel"):
        TokenizerConfig(latent_shift=[0.0, 1.0])
    with pytest.raises(ValueError, match="unknown tokenizer config fields: colour"):
        TokenizerConfig.from_dict({"colour": "red"})
    assert TokenizerConfig.from_dict(TINY.to_dict()) == TINY


def test_latent_normalisation_round_trips():
    model = model_for(TINY)
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    raw = model.encode_raw(images)
    shift = raw.mean(dim=(0, 2, 3)).tolist()
    scale = (1 / raw.std(dim=(0, 2, 3))).tolist()
    normalised = Autoencoder(TINY.with_latent_stats(shift, scale)).eval()
    normalised.load_state_dict(model.state_dict())
    latents = normalised.encode(images)
    torch.testing.assert_close(latents.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(latents.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(latents, (raw - torch.tensor(shift).view(4, 1, 1)) * torch.tensor(scale).view(4, 1, 1))
    # decode undoes the normalisation: the same images as the unnormalised model gives.
    torch.testing.assert_close(normalised.decode(latents), model.decode(raw), atol=1e-5, rtol=1e-5)


def test_save_and_load_round_trip_exactly(tmp_path):
    config = TINY.with_latent_stats([0.1, -0.2, 0.3, 0.0], [2.0, 1.0, 0.5, 1.5])
    model = model_for(config)
    model.save(tmp_path / "tok", training={"steps": 3})
    loaded = Autoencoder.from_pretrained(tmp_path / "tok")
    assert loaded.config == config and not loaded.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(model.encode(images), loaded.encode(images))
    assert json.loads((tmp_path / "tok" / "config.json").read_text())["training"] == {"steps": 3}


def test_wrong_or_corrupt_folders_raise_folder_errors(tmp_path):
    model = model_for(TINY)
    model.save(tmp_path / "tok")
    config_path = tmp_path / "tok" / "config.json"
    data = json.loads(config_path.read_text())

    config_path.write_text(json.dumps({**data, "kind": "diffusion"}))
    with pytest.raises(FolderError, match="of kind 'diffusion', not a 'tokenizer'"):
        Autoencoder.from_pretrained(tmp_path / "tok")
    config_path.write_text(json.dumps({**data, "latent_channels": 6}))  # the tensors are for 4 channels
    with pytest.raises(FolderError, match=r"does not match its config:\n  wrong shape"):
        Autoencoder.from_pretrained(tmp_path / "tok")
    config_path.write_text(json.dumps({**data, "encoder": "conv", "global_layers": 0}))
    with pytest.raises(FolderError, match="missing .* tensors"):
        Autoencoder.from_pretrained(tmp_path / "tok")
    config_path.write_text(json.dumps({**data, "downsample": 3}))
    with pytest.raises(FolderError, match="downsample must be one of 4, 8"):
        Autoencoder.from_pretrained(tmp_path / "tok")
    config_path.write_text("{not json")
    with pytest.raises(FolderError, match="config.json is corrupt"):
        Autoencoder.from_pretrained(tmp_path / "tok")
    config_path.write_text(json.dumps(data))
    shard = next((tmp_path / "tok").glob("model-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(FolderError, match="corrupt or truncated"):
        Autoencoder.from_pretrained(tmp_path / "tok")
    with pytest.raises(FolderError, match="is not a model folder"):
        Autoencoder.from_pretrained(tmp_path / "missing")


def test_a_few_training_steps_lower_the_loss_deterministically():
    from atelier.train.tokenizer import TrainSettings

    settings = TrainSettings(preset="tiny", size=32, seed=3, lr=3e-3)
    images = world_images(settings.seed, 0, 8, 32)

    def losses() -> list[float]:
        run = start_run("tiny", settings)
        return [train_step(run.model, run.optimizer, images, settings.lr, 1.0) for _ in range(12)]

    first, second = losses(), losses()
    assert first == second
    assert second[-1] < 0.7 * second[0]


def test_psnr_counts_rounded_pixels():
    target = -torch.ones(2, 3, 4, 4)  # uint8 0
    off_by_one = target + 1 / 127.5  # uint8 1 everywhere
    psnr = psnr_per_image(off_by_one, target)
    torch.testing.assert_close(psnr, torch.full((2,), 20 * torch.log10(torch.tensor(255.0)).item()))
    assert psnr_per_image(target, target).eq(100).all()


def test_cli_trains_a_loadable_tokenizer_and_compares(tmp_path, capsys):
    out = tmp_path / "tok"
    main(["train", "tokenizer", "--preset", "tiny", "--baseline", "tiny-conv", "--steps", "4", "--minutes", "0",
          "--batch", "4", "--size", "32", "--eval-images", "16", "--threads", "1", "-o", str(out),
          "--baseline-output", str(tmp_path / "base")])
    printed = capsys.readouterr().out
    assert "final held-out PSNR" in printed and "tiny-conv" in printed
    model = Autoencoder.from_pretrained(out)
    assert model.config.encoder == "cot" and len(model.config.latent_shift) == 4
    assert Autoencoder.from_pretrained(tmp_path / "base").config.encoder == "conv"
    report = json.loads((out / "comparison.json").read_text())
    assert [row["preset"] for row in report["rows"]] == ["tiny", "tiny-conv"]
    assert all(row["steps"] == 4 and row["images_seen"] == 16 for row in report["rows"])
    assert sorted(p.name for p in out.iterdir()) == ["comparison.json", "config.json",
                                                     "model-00001-of-00001.safetensors",
                                                     "model.safetensors.index.json"]


def test_cli_refuses_bad_training_requests(tmp_path):
    with pytest.raises(SystemExit, match="unknown tokenizer preset 'huge'; choices: cot-4x"):
        main(["train", "tokenizer", "--preset", "huge", "--steps", "1", "-o", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="image_size 34 is not a multiple of downsample 4"):
        main(["train", "tokenizer", "--preset", "tiny", "--size", "34", "--steps", "1", "-o", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="give a time budget"):
        main(["train", "tokenizer", "--preset", "tiny", "--minutes", "0", "-o", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()
