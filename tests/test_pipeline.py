"""The pipeline: a model folder in, images out, reproducibly; the batch entry point; the
generation metadata inside PNG, JPEG and WebP files; `atelier generate` and `atelier inspect`."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from atelier.folder import FolderError
from atelier.pipeline import MAX_IMAGES, Atelier, GenerationRequest
from atelier.pipeline.metadata import GenerationInfo, from_parameters, read_info, save_image


@pytest.fixture(scope="module")
def pipe(folder):
    return Atelier.from_pretrained(folder)


def test_images_carry_their_settings(pipe):
    images = pipe.text_to_image("a red circle above two blue squares", n=2, seed=11)
    assert [image.size for image in images] == [(64, 64), (64, 64)]
    assert images[1].info["atelier"] == GenerationInfo(
        prompt="a red circle above two blue squares", seed=12, steps=3, guidance=4.0, sampler="heun", size=64,
        model="model", model_hash=pipe.model_hash)
    assert len(pipe.model_hash) == 10


def test_a_seed_gives_the_same_image_alone_or_in_a_batch(pipe):
    batch = pipe.text_to_image("a green star", n=3, seed=40)
    alone = pipe.text_to_image("a green star", seed=41)
    difference = np.abs(np.asarray(batch[1], dtype=int) - np.asarray(alone[0], dtype=int))
    assert difference.max() <= 2
    assert np.abs(np.asarray(batch[0], dtype=int) - np.asarray(batch[1], dtype=int)).max() > 2


def test_the_batch_entry_point_mixes_settings_and_matches_single_requests(pipe):
    requests = [GenerationRequest("a green star", seed=5, guidance=2.0),
                GenerationRequest("a red circle", negative_prompt="a blue background", n=2, seed=9),
                GenerationRequest("a yellow heart", seed=1, steps=2, sampler="euler")]
    ticks = []
    batched = pipe.generate(requests, progress=lambda done, total: ticks.append((done, total)))
    assert [len(images) for images in batched] == [1, 2, 1]
    assert ticks[-1] == (5, 5) and [done for done, _ in ticks] == sorted(done for done, _ in ticks)
    for request, images in zip(requests, batched):
        alone = pipe.generate([request])[0]
        for one, other in zip(images, alone):
            assert one.info["atelier"] == other.info["atelier"]
            assert np.array_equal(np.asarray(one), np.asarray(other)), "bit for bit, alone or in a batch"
    assert batched[2][0].info["atelier"].steps == 2 and batched[1][1].info["atelier"].seed == 10


def test_a_negative_prompt_changes_the_image(pipe):
    plain = np.asarray(pipe.text_to_image("a red circle", seed=3)[0], dtype=int)
    empty = np.asarray(pipe.text_to_image("a red circle", negative_prompt="", seed=3)[0], dtype=int)
    negative = pipe.text_to_image("a red circle", negative_prompt="a green square", seed=3)[0]
    assert np.abs(plain - empty).max() <= 2
    assert np.abs(plain - np.asarray(negative, dtype=int)).max() > 2
    assert negative.info["atelier"].negative_prompt == "a green square"


def test_empty_and_overlong_prompts_warn(pipe):
    with pytest.warns(UserWarning, match="unconditional"):
        image = pipe.text_to_image("  ", seed=2)[0]
    assert image.info["atelier"].prompt == ""
    with pytest.warns(UserWarning, match="longer than the text encoder's 128 tokens"):
        pipe.text_to_image("a red circle and " * 60, seed=2)


@pytest.mark.parametrize("settings, message", [
    ({"size": 60}, "size must be one of the sizes the model 'model' makes: 64, got 60"),
    ({"steps": 0}, "steps must be a whole number from 1 to 1000"),
    ({"guidance": -1.0}, "guidance must be a number from 0 to 30"),
    ({"n": MAX_IMAGES + 1}, f"n must be a whole number from 1 to {MAX_IMAGES}"),
    ({"sampler": "ddim"}, "sampler must be one of euler, heun, multistep, got 'ddim'"),
    ({"seed": -1}, "seed must be a whole number from 0"),
])
def test_bad_settings_name_what_is_allowed(pipe, settings, message):
    with pytest.raises(ValueError, match=message):
        pipe.text_to_image("a circle", **settings)
    with pytest.raises(ValueError, match=message):   # nothing is sampled when any request of a batch is bad
        pipe.generate([GenerationRequest("a square"), GenerationRequest("a circle", **settings)])


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_metadata_survives_every_format(pipe, tmp_path, suffix):
    image = pipe.text_to_image("a red star", negative_prompt="blue, green", seed=42)[0]
    path = save_image(image, tmp_path / f"star{suffix}", image.info["atelier"])
    assert read_info(path) == image.info["atelier"]
    from atelier.pipeline.metadata import read_parameters

    text = read_parameters(path)
    assert text.startswith("a red star\nNegative prompt: blue, green\nSteps: 3, Sampler: heun, CFG scale: 4, Seed: 42")
    assert from_parameters(text) == image.info["atelier"], "the A1111 text alone is enough"


def test_metadata_errors_are_clear(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.png: not a readable image"):
        read_info(tmp_path / "bad.png")
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    assert read_info(tmp_path / "plain.png") is None
    with pytest.raises(ValueError, match="unsupported image type '.gif'"):
        save_image(Image.new("RGB", (8, 8)), tmp_path / "x.gif", GenerationInfo("a", 1, 1, 1.0, "heun", 64, "m", "h"))


def test_a_model_needs_its_own_text_encoder(folder, tmp_path):
    index = json.loads((folder / "model_index.json").read_text())
    index["text_encoder"]["fingerprint"] = "0123456789abcdef"
    copy = tmp_path / "copy"
    copy.mkdir()
    for part in ("transformer", "tokenizer"):
        (copy / part).symlink_to(folder / part)
    (copy / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(FolderError, match="trained with text encoder 0123456789abcdef"):
        Atelier.from_pretrained(copy)
    with pytest.raises(FolderError, match="not an Atelier model"):
        Atelier.from_pretrained(tmp_path)


def run_cli(*args):
    from atelier.cli import main

    main([str(a) for a in args])


def test_cli_generates_inspects_and_reproduces_exactly(folder, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red star above two blue circles\n\na green square\n")
    out = tmp_path / "out"
    run_cli("generate", "--model", folder, "--prompts", prompts, "-n", 2, "--seed", 7, "-o", out, "--quiet")
    run_cli("generate", "--model", folder, "a purple heart", "--seed", 1, "-o", out, "--format", "webp", "--quiet")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["00000-7.png", "00001-8.png", "00002-7.png", "00003-8.png", "00004-1.webp"], "never overwrites"
    capsys.readouterr()
    run_cli("inspect", out / "00003-8.png")
    assert capsys.readouterr().out.startswith("a green square\nSteps: 3, Sampler: heun, CFG scale: 4, Seed: 8")
    run_cli("generate", "--model", folder, "--from", out / "00001-8.png", "-o", tmp_path / "again", "--quiet")
    assert "identical to the original" in capsys.readouterr().out
    again = np.asarray(Image.open(tmp_path / "again" / "00000-8.png"))
    assert np.array_equal(again, np.asarray(Image.open(out / "00001-8.png")))


def test_reproduction_is_refused_when_the_weights_differ(folder, tmp_path):
    from safetensors.torch import load_file, save_file

    changed = tmp_path / "changed"
    shutil.copytree(folder, changed)
    shard = next((changed / "transformer").glob("*.safetensors"))
    tensors = load_file(str(shard))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1e-3
    save_file(tensors, str(shard), metadata={"format": "pt"})
    out = tmp_path / "out"
    run_cli("generate", "--model", folder, "a red star", "--seed", 4, "-o", out, "--quiet")
    with pytest.raises(SystemExit, match="cannot be reproduced exactly"):
        run_cli("generate", "--model", changed, "--from", out / "00000-4.png", "-o", tmp_path / "again")
    with pytest.raises(SystemExit, match="no Atelier generation metadata"):
        Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
        run_cli("generate", "--model", folder, "--from", tmp_path / "plain.png", "-o", tmp_path / "again")


def test_a_packed_model_is_fp16_and_generates(folder, tmp_path):
    from safetensors import safe_open

    from atelier.bundle import pack_bundle

    packed = pack_bundle(folder, tmp_path / "packed")
    for shard in packed.rglob("*.safetensors"):
        with safe_open(str(shard), "pt") as tensors:
            assert {str(tensors.get_tensor(name).dtype) for name in tensors.keys()} == {"torch.float16"}
    size = lambda path: sum(f.stat().st_size for f in path.rglob("*.safetensors"))  # noqa: E731
    assert size(packed) < 0.55 * size(folder)
    pipe = Atelier.from_pretrained(packed)
    assert pipe.index["stored_as"] == "fp16" and pipe.model_hash != Atelier.from_pretrained(folder).model_hash
    image = pipe.text_to_image("a red star", seed=5)[0]
    assert image.size == (64, 64) and image.info["atelier"].model_hash == pipe.model_hash
