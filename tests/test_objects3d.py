"""The 3D world and its oracle: exact solids, cameras the model agrees with, deterministic
renders whose silhouettes match the voxel truth, and an oracle that passes the truth and
fails what is wrong (the bars of `atelier eval --suite objects --validate`, at small scale)."""

import json
import math
import random
import time

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from atelier.evaluate import objects as suite
from atelier.evaluate.hull import carve, iou
from atelier.evaluate.views import read_view
from atelier.world.images.caption import held_out_words, words
from atelier.world.objects import evalset as evalobjects
from atelier.world.objects.camera import Camera, orbit
from atelier.world.objects.primitives import SHAPES_3D, primitive
from atelier.world.objects.query import Object3DQuery
from atelier.world.objects.scene import (
    HELD_OUT_PAIRS_3D,
    OCCUPANCY_RESOLUTION,
    Pose,
    default_cameras,
    make_object_sample,
    occupancy,
    realize_object,
    render_view,
    silhouette,
)


def test_camera_vector_equals_the_models():
    torch = pytest.importorskip("torch")
    from atelier.model.embed import camera_vector

    for azimuth, elevation, distance in [(0.0, 0.0, 3.2), (1.3, 0.4, 3.2), (5.9, -0.7, 2.0), (3.0, 1.2, 7.5)]:
        camera = Camera(azimuth, elevation, distance)
        for dim in (8, 12):
            expected = camera_vector(torch.tensor(azimuth), torch.tensor(elevation), torch.tensor(distance), dim=dim)
            np.testing.assert_allclose(camera.vector(dim), expected.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="camera_dim"):
        Camera(0.0, 0.0).vector(5)


def test_the_camera_looks_at_the_origin_from_its_angles():
    camera = Camera(math.pi / 2, math.radians(30))
    np.testing.assert_allclose(camera.position / camera.distance, [0, math.cos(math.radians(30)), 0.5], atol=1e-12)
    pixel, in_front = camera.project(np.zeros(3), 64)
    assert in_front and np.allclose(pixel, [32, 32])
    pixel, _ = camera.project(np.array([0.0, 0.0, 0.5]), 64)  # up in the world is up in the image
    assert pixel[1] < 32


@pytest.mark.parametrize("shape", SHAPES_3D)
def test_occupancy_volume_matches_the_analytic_volume(shape):
    for pose in (Pose(shape, 0.0, 1.0), Pose(shape, 0.7, 0.6), Pose(shape, 1.9, 0.77)):
        voxels = occupancy(pose, 96).sum() * (2 / 96) ** 3
        assert voxels == pytest.approx(primitive(shape).volume * pose.scale ** 3, rel=0.05)  # flat faces: half a voxel


@pytest.mark.parametrize("shape", SHAPES_3D)
def test_silhouettes_agree_with_the_projected_occupancy(shape):
    pose = Pose(shape, 0.4, 0.9)
    truth = occupancy(pose, OCCUPANCY_RESOLUTION)
    cameras = orbit(4, 0.3, math.radians(25))
    masks = [silhouette(pose, camera, 128) >= 0.5 for camera in cameras]
    hull = carve(masks, cameras, OCCUPANCY_RESOLUTION)
    assert (truth & ~hull).sum() <= 0.01 * truth.sum(), "a silhouette misses part of the object"
    fine = np.argwhere(occupancy(pose, 64)) * 2 / 64 - 1 + 1 / 64  # occupied voxel centres
    for mask, camera in zip(masks, cameras):
        # Conversely, every silhouette pixel lies within a voxel's width of a projected centre.
        pixels, _ = camera.project(fine, 128)
        covered = np.zeros_like(mask)
        covered[np.clip(pixels[:, 1].astype(int), 0, 127), np.clip(pixels[:, 0].astype(int), 0, 127)] = True
        grown = binary_dilation(covered, iterations=2)
        assert (mask & ~grown).sum() <= 0.01 * mask.sum()


@pytest.mark.parametrize("shape", SHAPES_3D)
def test_the_largest_objects_stay_inside_the_frame(shape):
    for elevation in (-60, 0, 15, 30, 85):
        for yaw in np.linspace(0, math.pi / 2, 4):
            coverage = silhouette(Pose(shape, float(yaw), 1.0), Camera(0.3, math.radians(elevation)), 64, 1)
            border = np.concatenate([coverage[0], coverage[-1], coverage[:, 0], coverage[:, -1]])
            assert not border.any() and coverage.any(), (elevation, yaw)


def test_renders_are_deterministic_anti_aliased_and_fast():
    obj = realize_object(Object3DQuery(shape="cube", colour="red"), random.Random(3))
    camera = Camera(0.5, math.radians(20))
    first = render_view(obj, camera)
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
    assert np.array_equal(first, render_view(obj, camera))
    background = np.round(np.asarray(obj.background.rgbs[0]) * 255)
    edge = silhouette(obj, camera, 64, 3)  # the sub-pixel samples render_view takes
    partial = (edge > 0.1) & (edge < 0.9)
    assert partial.any() and (np.abs(first[partial] - background).sum(-1) > 0).all(), "edges blend"
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        render_view(obj, camera)
        timings.append(time.perf_counter() - start)
    assert sorted(timings)[2] < 0.1, timings  # about 10 ms on one core; the bar leaves room for a busy machine


def test_shading_darkens_surfaces_facing_away_from_the_light():
    obj = realize_object(Object3DQuery(shape="sphere", colour="white"), random.Random(0))
    image = render_view(obj, Camera(0.0, 0.0)).astype(float)
    lit, dark = image[22, 22].sum(), image[44, 44].sum()  # upper left faces the light, lower right away
    assert lit > dark * 1.4


def test_samples_depend_only_on_seed_and_index():
    a = make_object_sample(5, 11)
    b = make_object_sample(5, 11)
    assert np.array_equal(a.views, b.views) and a.caption == b.caption and a.object == b.object
    assert a.views.shape == (4, 64, 64, 3) and a.camera_vectors.shape == (4, 8)
    np.testing.assert_array_equal(a.camera_vectors, np.stack([c.vector() for c in a.cameras]))
    assert a.occupancy().shape == (OCCUPANCY_RESOLUTION,) * 3 and a.occupancy().any()
    elevations = {c.elevation for c in a.cameras}
    assert len(elevations) == 1 and math.radians(15) <= elevations.pop() <= math.radians(30)
    other = make_object_sample(5, 12, size=96, views=2)
    assert other.views.shape == (2, 96, 96, 3) and not np.array_equal(other.views[0][:64, :64], a.views[0])
    custom = make_object_sample(5, 11, cameras=(Camera(1.0, 0.2),))
    assert custom.object == a.object and custom.views.shape == (1, 64, 64, 3)


def test_training_samples_hold_out_pairs_and_use_training_words():
    reserved = held_out_words()
    seen = set()
    for index in range(400):
        sample = make_object_sample(0, index, size=32, views=1)
        pair = (sample.object.colour, sample.object.shape)
        assert pair not in HELD_OUT_PAIRS_3D
        assert not set(words(sample.caption)) & reserved, sample.caption
        assert sample.query.satisfied_by(sample.object)
        seen.add(sample.object.shape)
    assert seen == set(SHAPES_3D)


def test_the_committed_eval_set_matches_build():
    assert list(evalobjects.load()) == evalobjects.build()
    cases = evalobjects.load()
    assert {c.category for c in cases} == set(evalobjects.CATEGORIES_3D)
    held = [c for c in cases if c.category == "held_out_pairs"]
    assert held and all((c.query.colour, c.query.shape) in HELD_OUT_PAIRS_3D for c in held)
    assert all(len(c.cameras) == evalobjects.VIEWS for c in cases)


def test_the_oracle_reads_every_shape_and_colour_of_the_truth():
    rng = random.Random(7)
    for shape in SHAPES_3D:
        for size in ("small", "large"):
            obj = realize_object(Object3DQuery(shape=shape, size=size), rng)
            camera = default_cameras(rng, 1)[0]
            reading = read_view(render_view(obj, camera), camera)
            assert (reading.shape, reading.colour, reading.size) == (obj.shape, obj.colour, obj.size)
    for colour in ("white", "gray", "black", "brown", "orange"):
        obj = realize_object(Object3DQuery(shape="sphere", colour=colour), rng)
        camera = Camera(1.0, 0.3)
        assert read_view(render_view(obj, camera), camera).colour == colour


@pytest.fixture(scope="module")
def table():
    # Eight cases (every category) and one object each keep this near 15 s on two cores; the
    # issue note reports the full set.
    return suite.validate(evalobjects.load()[::14], per_case=1)


@pytest.mark.slow
def test_validation_bars(table):
    rows = table["conditions"]
    assert rows["truth"]["overall"] >= 0.95
    for condition in ("blur", "noise", "jpeg", "blur+noise+jpeg"):
        assert rows[condition]["overall"] >= 0.90, condition
    assert rows["uniform noise"]["overall"] <= 0.05
    assert rows["shuffled prompts"]["overall"] <= 0.10
    assert rows["truth"]["occupancy_iou"] >= 0.55 and rows["truth"]["consistency"] == 1.0


@pytest.mark.slow
def test_simulated_failures_fail_exactly_their_categories(table):
    rows = table["conditions"]
    truth = rows["truth"]["categories"]
    expectations = {"wrong shape": ({"shape", "colour_shape", "size", "held_out_pairs"}, {"colour"}),
                    "wrong colour": ({"colour", "colour_shape", "held_out_pairs"}, {"shape", "size"})}
    for condition, (failing, passing) in expectations.items():
        for category in failing:
            assert rows[condition]["categories"][category]["score"] <= 0.1, (condition, category)
        for category in passing:
            assert rows[condition]["categories"][category]["score"] >= truth[category]["score"] - 0.05
    assert rows["wrong cameras"]["occupancy_iou"] <= rows["truth"]["occupancy_iou"] - 0.04
    assert rows["mixed objects"]["overall"] <= 0.1 and rows["mixed objects"]["consistency"] <= 0.2
    assert rows["mixed objects"]["occupancy_iou"] <= rows["truth"]["occupancy_iou"] - 0.05
    assert "occ IoU" in suite.format_validation(table)


def test_folder_round_trip_and_predicted_occupancy(tmp_path):
    cases = suite.load_cases()[:2]
    suite.write_truth(tmp_path, cases, per_case=1)
    assert sorted(p.name for p in (tmp_path / cases[0].id / "0").iterdir()) == ["00.png", "01.png", "02.png", "03.png"]
    results = suite.score_folder(tmp_path, cases)
    summary = suite.summarise(results)
    assert summary["overall"] == 1.0 and summary["objects"] == 2
    carved = results[0].verdicts[0].occupancy_iou
    assert 0.4 <= carved <= results[0].verdicts[0].ceiling + 0.05
    json.dumps(suite.report(results, model="truth"))
    assert "occupancy IoU" in suite.format_table(summary)

    truth = occupancy(suite.truth_object(cases[0], 0))
    np.save(tmp_path / cases[0].id / "0" / "occupancy.npy", truth)
    predicted = suite.score_folder(tmp_path, cases)[0].verdicts[0].occupancy_iou
    assert predicted > carved and predicted >= 0.85
    np.save(tmp_path / cases[0].id / "0" / "occupancy.npy", np.ones((8, 8, 8)))
    with pytest.raises(ValueError, match="occupancy must be"):
        suite.score_folder(tmp_path, cases)


def test_clear_errors(tmp_path):
    cases = suite.load_cases()[:2]
    with pytest.raises(ValueError, match="no such folder"):
        suite.score_folder(tmp_path / "nothing", cases)
    suite.write_truth(tmp_path, cases[:1], per_case=1)
    with pytest.raises(ValueError, match="partial"):
        suite.score_folder(tmp_path, cases)
    assert len(suite.score_folder(tmp_path, cases, partial=True)) == 1
    (tmp_path / cases[0].id / "0" / "02.png").unlink()
    with pytest.raises(ValueError, match="missing views 02"):
        suite.score_folder(tmp_path, cases, partial=True)
    with pytest.raises(ValueError, match="elevation"):
        Camera(0.0, 2.0)
    with pytest.raises(ValueError, match="distance"):
        Camera(0.0, 0.0, 0.5)
    with pytest.raises(ValueError, match="unknown 3D shape"):
        Object3DQuery(shape="star")
    with pytest.raises(ValueError, match="at least"):
        Object3DQuery(size="small")
    with pytest.raises(ValueError, match="32 to 256"):
        render_view(realize_object(Object3DQuery(shape="cone"), random.Random(0)), Camera(0.0, 0.0), size=16)


def test_hull_of_few_views_holds_the_object_and_iou_is_symmetric():
    pose = Pose("torus", 0.0, 1.0)
    cameras = orbit(4, 0.2, math.radians(20))
    hull = carve([silhouette(pose, c) >= 0.5 for c in cameras], cameras, 32)
    truth = occupancy(pose, 32)
    assert iou(hull, truth) == iou(truth, hull) < 0.75  # the hole does not carve from low cameras
    assert iou(truth, truth) == 1.0


def test_turntable_gif(tmp_path):
    from atelier.world.objects.preview import frames_as_array, write_turntable

    path = write_turntable(tmp_path, seed=1, count=2, size=32, frames=3)
    frames = frames_as_array(path)
    assert path.name == "objects.gif" and frames.shape[0] == 3
    assert not np.array_equal(frames[0], frames[1]), "the camera orbits"
