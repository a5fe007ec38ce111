"""Rectified flow: timesteps, the loss, guidance and the samplers."""

import pytest
import torch

from atelier.flow import counter_rng
from atelier.flow.guidance import Conditioning, GuidedDenoiser
from atelier.flow.objective import (
    FlowConfig,
    draw_per_sample,
    flow_loss,
    frame_times,
    sample_timesteps,
    timestep_shift,
)
from atelier.flow.samplers import SAMPLERS, get_sampler, initial_noise, time_grid
from atelier.model.transformer import SpaceTimeTransformer
from tests.test_model import MICRO, canvas, randomised, text

MEAN, STD = 2.0, 0.5


def gaussian_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The exact velocity field when the data are N(MEAN, STD^2): samplers must land on that law."""
    s = t.view(-1, *[1] * (x.dim() - 1))
    variance = (1 - s) ** 2 * STD ** 2 + s ** 2
    clean = MEAN + (1 - s) * STD ** 2 * (x - (1 - s) * MEAN) / variance
    noise = s * (x - (1 - s) * MEAN) / variance
    return noise - clean


def test_time_grid_descends_from_start_to_zero():
    grid = time_grid(10, shift=3.0)
    assert grid[0] == 1.0 and grid[-1] == 0.0 and (grid[1:] < grid[:-1]).all()
    assert time_grid(10, shift=3.0)[5] > time_grid(10, shift=1.0)[5], "a shift spends more steps at high noise"
    assert time_grid(4, start=0.6)[0] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="steps"):
        time_grid(0)


def test_timesteps_are_logit_normal_and_shift_with_resolution():
    generator = torch.Generator().manual_seed(0)
    t = sample_timesteps(20000, 1.0, FlowConfig(), generator)
    assert 0 < t.min() and t.max() < 1 and abs(t.median().item() - 0.5) < 0.02
    shifted = sample_timesteps(20000, timestep_shift(256, 64), FlowConfig(), generator)
    assert shifted.median() > 0.6
    assert timestep_shift(64, 64) == 1.0 and timestep_shift(16, 64) == 1.0 and timestep_shift(256, 64) == 2.0


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_samplers_reach_the_data_distribution(name):
    x = initial_noise((1, 1, 1, 4000), [0])
    result = get_sampler(name)(gaussian_velocity, x, time_grid(100, shift=2.0))
    assert abs(result.mean().item() - MEAN) < 0.03 and abs(result.std().item() - STD) < 0.03


def test_higher_order_samplers_are_more_accurate_in_few_steps():
    x = initial_noise((1, 1, 1, 4000), [0])
    exact = get_sampler("heun")(gaussian_velocity, x, time_grid(400, shift=2.0))
    error = {name: (sampler(gaussian_velocity, x, time_grid(16, shift=2.0)) - exact).abs().mean().item()
             for name, sampler in SAMPLERS.items()}
    assert error["heun"] < error["euler"] / 20 and error["multistep"] < error["euler"] / 5, error


def test_callback_sees_every_step_and_can_stop_sampling():
    seen = []
    get_sampler("euler")(gaussian_velocity, initial_noise((4,), [1]), time_grid(5), callback=seen.append)
    assert [info["i"] for info in seen] == [0, 1, 2, 3, 4] and seen[0]["steps"] == 5

    class Cancelled(Exception):
        pass

    def cancel(info):
        if info["i"] == 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        get_sampler("multistep")(gaussian_velocity, initial_noise((4,), [1]), time_grid(5), callback=cancel)
    with pytest.raises(ValueError, match="unknown sampler 'ddim'"):
        get_sampler("ddim")


def test_a_seed_gives_the_same_noise_in_any_batch():
    alone = initial_noise((4, 8, 8), [7])
    batched = initial_noise((4, 8, 8), [3, 7, 11])
    assert torch.equal(alone[0], batched[1]) and not torch.equal(batched[0], batched[1])


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_a_seed_gives_the_same_sample_in_any_batch(name):
    model = randomised()
    tokens, mask, pooled = text(3, seed=4)

    def sample(rows, seeds):
        cond = Conditioning(tokens[rows], mask[rows], pooled[rows])
        noise = initial_noise((1, 4, 8, 8), seeds)
        return get_sampler(name)(GuidedDenoiser(model, cond, text_scale=3.0), noise, time_grid(4))

    together = sample([0, 1, 2], [5, 6, 7])
    alone = sample([1], [6])
    assert (together[1] - alone[0]).abs().max() < 1e-4


class Recorder(torch.nn.Module):
    """Stands in for the model: returns a velocity that encodes which conditioning it saw."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, tokens, mask, pooled, keep_mask=None, context=None, camera=None, drop_text=None):
        self.calls.append(x.shape[0])
        has_context = torch.zeros(x.shape[0]) if keep_mask is None else keep_mask.flatten(1).amax(1)
        value = 1.0 + 10.0 * (~drop_text).float() + 100.0 * has_context
        return value[:, None, None, None, None].expand_as(x).clone()


def test_guidance_combines_passes_by_the_formula():
    x = torch.zeros(2, 1, 4, 8, 8)
    cond = Conditioning(*text(2))
    recorder = Recorder()
    assert torch.all(GuidedDenoiser(recorder, cond)(x, torch.ones(2)) == 11.0)          # one pass, with text
    guided = GuidedDenoiser(recorder, cond, text_scale=4.0)(x, torch.ones(2))           # 1 + 4 * (11 - 1)
    assert torch.all(guided == 41.0) and recorder.calls == [2, 4]

    keep = torch.zeros(2, 1, 1, 8, 8)
    keep[..., :4] = 1
    with_context = Conditioning(*text(2), keep_mask=keep, context=torch.zeros(2, 1, 4, 8, 8))
    denoiser = GuidedDenoiser(recorder, with_context, text_scale=4.0, context_scale=2.0)
    # v(-,-) = 1, v(ctx,-) = 101, v(ctx,txt) = 111: 1 + 2 * 100 + 4 * 10
    assert denoiser.passes == 3 and torch.all(denoiser(x, torch.ones(2)) == 241.0)


def test_known_parts_are_pasted_and_known_frames_start_clean():
    keep = torch.zeros(1, 3, 1, 4, 4)
    keep[:, 0] = 1
    keep[:, 1, :, :2] = 1
    assert frame_times(torch.tensor([0.5]), keep, 3).tolist() == [[0.0, 0.5, 0.5]]
    seen = {}

    def model(x, t, *args, keep_mask=None, context=None, **kwargs):
        seen["x"], seen["t"] = x, t
        return torch.zeros_like(x)

    model.config = MICRO
    context = torch.full((1, 3, 4, 4, 4), 5.0)
    cond = Conditioning(*text(1), keep_mask=keep, context=context)
    GuidedDenoiser(model, cond)(torch.zeros(1, 3, 4, 4, 4), torch.tensor([0.5]))
    assert torch.all(seen["x"][:, 0] == 5.0) and torch.all(seen["x"][:, 1, :, :2] == 5.0)
    assert torch.all(seen["x"][:, 1, :, 2:] == 0.0) and seen["t"].tolist() == [[0.0, 0.5, 0.5]]


def test_loss_asks_no_velocity_where_the_canvas_is_known():
    model = randomised()
    outputs = []

    def keep_output(module, args, kwargs, output):
        output.retain_grad()
        outputs.append((output, kwargs))

    model.register_forward_hook(keep_output, with_kwargs=True)
    keep = torch.zeros(2, 1, 1, 8, 8)
    keep[..., :4] = 1
    loss = flow_loss(model, canvas(2, 1, 4, 8, 8), *text(2), keep_mask=keep, config=FlowConfig(context_dropout=0.0),
                     generator=torch.Generator().manual_seed(3))
    loss.backward()
    velocity, given = outputs[0]
    assert torch.all(velocity.grad[..., :4] == 0) and torch.all(velocity.grad[..., 4:] != 0)
    assert torch.equal(given["keep_mask"], keep) and given["context"] is not None


def test_a_few_steps_of_training_lower_the_loss():
    torch.manual_seed(0)
    model = SpaceTimeTransformer(MICRO)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    latents = canvas(4, 1, 4, 8, 8) * 0.5 + 1.0
    tokens, mask, pooled = text(4)
    losses = []
    for step in range(30):
        loss = flow_loss(model, latents, tokens, mask, pooled, generator=torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def _splitmix(word: int) -> int:
    """SplitMix64's finaliser on Python's unbounded ints: the reference for the int64 tensor version."""
    mask = (1 << 64) - 1
    word = ((word ^ (word >> 30)) * 0xBF58476D1CE4E5B9) & mask
    word = ((word ^ (word >> 27)) * 0x94D049BB133111EB) & mask
    return word ^ (word >> 31)


def test_counter_words_are_splitmix64_bit_for_bit():
    """int64 tensor arithmetic wraps as unsigned 64-bit arithmetic does, so the words are exact (any device)."""
    rows, gamma, mask = [0, 1, 7, 2**40 + 3], counter_rng.GOLDEN_GAMMA, (1 << 64) - 1
    key = counter_rng.stream_key(11, "noise") & mask
    expected = [[_splitmix((_splitmix((key + row * gamma) & mask) + step * gamma) & mask) for step in range(1, 6)]
                for row in rows]
    got = counter_rng.words(11, "noise", torch.tensor(rows), 5)
    assert [[word & mask for word in row] for row in got.tolist()] == expected


def test_a_samples_draws_depend_only_on_its_seed_and_index():
    shape, indices = (2, 3, 4, 4), list(range(40, 48))
    whole = draw_per_sample(shape, 5, indices)
    halves = [draw_per_sample(shape, 5, indices[:3]), draw_per_sample(shape, 5, indices[3:])]
    backwards = draw_per_sample(shape, 5, indices[::-1])
    for name in ("normal", "noise", "text_coin", "context_coin"):
        rows = getattr(whole, name)
        assert torch.equal(rows, torch.cat([getattr(half, name) for half in halves])), name
        assert torch.equal(rows, getattr(backwards, name).flip(0)), name
    assert whole.noise.shape == (8, *shape) and whole.normal.shape == whole.text_coin.shape == (8,)
    other_seed = draw_per_sample(shape, 6, indices)
    assert not torch.equal(whole.noise, other_seed.noise) and not torch.equal(whole.normal, other_seed.normal)
    assert not torch.equal(whole.text_coin, whole.context_coin), "the two coins are separate draws"
    longer = draw_per_sample((2, 3, 4, 5), 5, indices)
    assert torch.equal(longer.normal, whole.normal), "a row's timestep does not depend on the canvas shape"


def test_counter_uniforms_and_normals_have_their_laws():
    rows = torch.arange(1_000, 1_100)
    u = counter_rng.uniform(3, "coin", rows, 1_000).flatten()                               # 100k
    assert u.dtype == torch.float32 and 0 <= u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.std() - 12 ** -0.5) < 0.005
    assert abs(torch.histc(u, bins=10, min=0, max=1) / len(u) - 0.1).max() < 0.005
    z = counter_rng.normal(3, "noise", rows, 1_001)                                          # odd: half a pair left
    assert z.shape == (100, 1_001) and z.dtype == torch.float32 and torch.isfinite(z).all()
    z = z.flatten().double()
    assert abs(z.mean()) < 0.015 and abs(z.std() - 1) < 0.01
    assert abs((z.abs() < 1.959964).double().mean() - 0.95) < 0.005, "the tails are the normal's"
    pairs = counter_rng.normal(3, "noise", rows, 1_000).view(-1, 2).double().T              # [2, 50k]
    assert abs(torch.corrcoef(pairs)[0, 1]) < 0.02, "a Box-Muller pair's two values are uncorrelated"


@pytest.mark.gpu
def test_counter_draws_are_the_same_on_cuda():
    rows = torch.arange(0, 4096, 7)
    for make in (counter_rng.words, counter_rng.uniform):
        assert torch.equal(make(9, "s", rows, 300), make(9, "s", rows.cuda(), 300).cpu()), make.__name__
    cpu, cuda = counter_rng.normal(9, "s", rows, 300), counter_rng.normal(9, "s", rows.cuda(), 300).cpu()
    assert (cpu != cuda).double().mean() < 1e-4 and torch.allclose(cpu, cuda, rtol=0, atol=1e-6)
