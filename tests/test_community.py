"""The community on a real server: publish and unpublish, the gallery (search, sort), likes,
remix (which makes the same image again), profiles, reports and moderation, keeping one of a
job's candidates, training consent, account deletion, rate limits, and the feedback export that
`atelier train model --data DIR` trains on."""

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atelier.pipeline.metadata import read_info
from atelier.server.accounts import create_key, create_user
from atelier.server.config import ServerSettings
from atelier.server.db import Database
from tests.api_server import start_server
from tests.test_jobs import call

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(pipe, tmp_path_factory):
    live = start_server(ServerSettings(data=tmp_path_factory.mktemp("data"), threads=1, rate_limit=100_000), pipe)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def keys(server):
    database = Database(server.settings.database_url)
    with database.session() as session:
        create_user(session, "moderator")
        admin = create_key(session, "moderator", "admin")[1]
    database.close()
    return {"alice": server.add_user("alice"), "bob": server.add_user("bob"), "admin": admin}


def make(server, key, prompt, n=2, seed=11):
    """The ids of a finished text_to_image job's images."""
    job = call(server, key, "POST", "/v1/jobs", {"task": "text_to_image", "input": {"prompt": prompt, "n": n,
                                                                                    "seed": seed}},
               {"Prefer": "wait=60"})[2]
    assert job["status"] == "succeeded", job
    return [image["id"] for image in job["output"]["images"]]


def pixels(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return np.asarray(Image.open(response).convert("RGB"))


def test_publish_like_search_profile_and_remix(server, keys):
    first, second = make(server, keys["alice"], "a violet star above a grey ring")
    assert call(server, keys["bob"], "GET", f"/v1/gallery/{first}")[0] == 404           # private by default
    assert call(server, keys["bob"], "POST", f"/v1/assets/{first}/publish")[0] == 404   # not bob's to publish
    status, _, published = call(server, keys["alice"], "POST", f"/v1/assets/{first}/publish")
    assert status == 200 and published["owner"] == "alice" and published["published"]

    gallery = call(server, keys["bob"], "GET", "/v1/gallery?q=VIOLET%20star")[2]["data"]
    assert [entry["id"] for entry in gallery] == [first] and gallery[0]["liked"] is False
    assert call(server, keys["bob"], "GET", f"/v1/gallery/{second}")[0] == 404
    assert call(server, keys["bob"], "GET", "/v1/gallery?q=100%25")[2]["data"] == []    # LIKE wildcards escaped

    for _ in range(2):                                                                   # a like counts once
        liked = call(server, keys["bob"], "POST", f"/v1/gallery/{first}/like")[2]
    assert liked == {"id": first, "likes": 1, "liked": True}
    assert call(server, keys["bob"], "DELETE", f"/v1/gallery/{first}/like")[2]["likes"] == 0
    call(server, keys["bob"], "POST", f"/v1/gallery/{first}/like")

    other = make(server, keys["bob"], "a violet square", n=1)[0]
    call(server, keys["bob"], "POST", f"/v1/assets/{other}/publish")
    by_likes = [entry["id"] for entry in call(server, keys["alice"], "GET", "/v1/gallery?sort=likes&q=violet")[2][
        "data"]]
    by_date = [entry["id"] for entry in call(server, keys["alice"], "GET", "/v1/gallery?q=violet")[2]["data"]]
    assert by_likes == [first, other] and by_date == [other, first]

    profile = call(server, keys["bob"], "GET", "/v1/profiles/alice")[2]
    assert (profile["name"], profile["published"], profile["likes"]) == ("alice", 1, 1)
    assert [entry["id"] for entry in profile["items"]] == [first] and profile["items"][0]["liked"] is True
    assert call(server, keys["bob"], "GET", "/v1/profiles/nobody")[0] == 404

    remix = call(server, keys["bob"], "GET", f"/v1/gallery/{first}/remix")[2]
    assert remix["input"]["prompt"] == "a violet star above a grey ring" and remix["input"]["seed"] == 11
    again = call(server, keys["bob"], "POST", "/v1/jobs", {"task": remix["task"], "input": remix["input"]},
                 {"Prefer": "wait=60"})[2]
    original = call(server, keys["bob"], "GET", f"/v1/gallery/{first}")[2]
    assert np.array_equal(pixels(again["output"]["images"][0]["url"]), pixels(original["url"]))   # the same image

    call(server, keys["alice"], "POST", f"/v1/assets/{first}/unpublish")
    assert call(server, keys["bob"], "GET", f"/v1/gallery/{first}")[0] == 404


def test_reports_reach_moderators_who_hide_the_image_for_good(server, keys):
    image = make(server, keys["alice"], "a teal heart", n=1)[0]
    call(server, keys["alice"], "POST", f"/v1/assets/{image}/publish")
    assert call(server, keys["bob"], "POST", f"/v1/gallery/{image}/report", {"reason": "spam"})[0] == 202
    assert call(server, keys["bob"], "POST", f"/v1/gallery/{image}/report", {"reason": "spam again"})[0] == 202
    assert call(server, keys["bob"], "GET", "/v1/admin/reports")[0] == 403
    reports = call(server, keys["admin"], "GET", "/v1/admin/reports")[2]["data"]
    assert [(entry["id"], entry["reports"], entry["reasons"]) for entry in reports] == [(image, 1, ["spam"])]
    assert call(server, keys["admin"], "POST", f"/v1/admin/assets/{image}/hide", {"hidden": True})[2]["hidden"]
    assert call(server, keys["bob"], "GET", f"/v1/gallery/{image}")[0] == 404
    assert image not in [entry["id"] for entry in call(server, keys["bob"], "GET", "/v1/gallery?limit=100")[2]["data"]]
    assert call(server, keys["admin"], "GET", "/v1/admin/reports")[2]["data"] == []      # resolved
    status, _, answer = call(server, keys["alice"], "POST", f"/v1/assets/{image}/publish")
    assert status == 403 and answer["error"]["code"] == "hidden_by_moderator"


def test_publishing_and_liking_have_rate_limits(pipe, tmp_path_factory):
    live = start_server(ServerSettings(data=tmp_path_factory.mktemp("limits"), threads=1, publish_limit=1,
                                       like_limit=1), pipe)
    try:
        key = live.add_user("carol")
        first, second = make(live, key, "a red circle")
        assert call(live, key, "POST", f"/v1/assets/{first}/publish")[0] == 200
        assert call(live, key, "POST", f"/v1/assets/{first}/publish")[0] == 200     # already published: free
        status, headers, answer = call(live, key, "POST", f"/v1/assets/{second}/publish")
        assert status == 429 and int(headers["Retry-After"]) > 0 and "publish at most 1" in answer["error"]["message"]
        assert call(live, key, "POST", f"/v1/gallery/{first}/like")[0] == 200
        call(live, key, "DELETE", f"/v1/gallery/{first}/like")
        assert call(live, key, "POST", f"/v1/gallery/{first}/like")[0] == 429
    finally:
        live.stop()


@pytest.mark.slow
def test_consent_decides_the_export_and_the_trainer_reads_it(server, keys, tmp_path):
    kept, passed_over = make(server, keys["alice"], "a navy cross", seed=21)
    chosen, rejected = make(server, keys["alice"], "a lime crescent", seed=31)
    for image in (chosen, rejected):
        assert call(server, keys["alice"], "POST", f"/v1/assets/{image}/publish")[0] == 200
    assert call(server, keys["alice"], "POST", f"/v1/assets/{passed_over}/keep")[2] == {"kept": passed_over,
                                                                                         "others": [kept]}
    # she changes her mind: the last keep replaces the first, so the pair says what she chose in the end
    assert call(server, keys["alice"], "POST", f"/v1/assets/{kept}/keep")[2] == {"kept": kept,
                                                                                  "others": [passed_over]}
    assert call(server, keys["bob"], "POST", f"/v1/gallery/{chosen}/like")[2]["liked"]
    database, storage = server.services.db, server.services.storage

    from atelier.server.flywheel import export

    assert call(server, keys["alice"], "GET", "/v1/account")[2]["training_consent"] is False    # off by default
    nothing = export(database, storage, tmp_path / "none")
    assert (nothing["images"], nothing["pairs"]) == (0, 0)

    for name in ("alice", "bob"):
        assert call(server, keys[name], "PATCH", "/v1/account", {"training_consent": True})[2]["training_consent"]
    out = tmp_path / "export"
    manifest = export(database, storage, out)
    captions = {path.stem: path.read_text().strip() for path in (out / "images").glob("*.txt")}
    assert captions[chosen] == captions[rejected] == "a lime crescent"
    assert manifest["images"] == len(captions) and manifest["images"] >= 2
    pairs = [json.loads(line) for line in (out / "preferences.jsonl").read_text().splitlines()]
    assert {"prompt": "a navy cross", "chosen": f"pairs/{kept}.png", "rejected": f"pairs/{passed_over}.png",
            "signal": "keep"} in pairs
    assert not [pair for pair in pairs if pair["chosen"] == f"pairs/{passed_over}.png"]
    assert {"prompt": "a lime crescent", "chosen": f"pairs/{chosen}.png", "rejected": f"pairs/{rejected}.png",
            "signal": "like"} in pairs
    for pair in pairs:
        assert read_info(out / pair["chosen"]).prompt == pair["prompt"]
    with pytest.raises(ValueError, match="not empty"):
        export(database, storage, out)

    from atelier.tokenizer.autoencoder import Autoencoder
    from atelier.tokenizer.config import preset

    tokenizer = Autoencoder(preset("tiny")).save(tmp_path / "tokenizer")
    run = subprocess.run([sys.executable, "-m", "atelier", "train", "model", "--preset", "tiny", "--data", str(out),
                          "--tokenizer", str(tokenizer), "-o", str(tmp_path / "run"), "--batch", "2", "--steps", "2",
                          "--checkpoint-every", "2", "--sample-steps", "2", "--threads", "1", "--precision", "fp32"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(np.isfinite(losses))


def test_deleting_an_account_removes_everything_of_it(server, keys, pipe):
    dave = server.add_user("dave")
    image = make(server, dave, "an amber diamond", n=1)[0]
    call(server, dave, "POST", f"/v1/assets/{image}/publish")
    alices = make(server, keys["alice"], "a white arrow", n=1)[0]
    call(server, keys["alice"], "POST", f"/v1/assets/{alices}/publish")
    assert call(server, dave, "POST", f"/v1/gallery/{alices}/like")[2]["likes"] == 1
    files = list((server.settings.data / "assets" / "1").parent.rglob(f"{image}.png"))
    assert len(files) == 1
    status, _, answer = call(server, dave, "DELETE", "/v1/account", {"confirm": "not dave"})
    assert status == 400 and answer["error"]["code"] == "confirmation_mismatch"
    assert call(server, dave, "DELETE", "/v1/account", {"confirm": "dave"})[2] == {"deleted": "dave", "images": 1}
    assert call(server, dave, "GET", "/v1/account")[0] == 401                           # the key is gone too
    assert not files[0].exists()
    assert call(server, keys["alice"], "GET", f"/v1/gallery/{image}")[0] == 404
    assert call(server, keys["alice"], "GET", f"/v1/gallery/{alices}")[2]["likes"] == 0     # dave's like went with him


def test_the_export_command(server, keys, tmp_path):
    out = tmp_path / "cli-export"
    run = subprocess.run([sys.executable, "-m", "atelier", "feedback", "export", str(out), "--data",
                          str(server.settings.data)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "captioned images" in run.stdout and (out / "manifest.json").is_file()
    again = subprocess.run([sys.executable, "-m", "atelier", "feedback", "export", str(out), "--data",
                            str(server.settings.data)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "is not empty" in again.stderr


def test_a_signed_in_user_with_an_admin_key_moderates_from_the_studio(server, keys):
    """The studio's session says `admin` when its user holds an unrevoked admin key, and that session
    may use the admin endpoints; a plain user key of the same user may not, nor may anyone else."""
    from tests.test_studio import Browser

    database = Database(server.settings.database_url)
    with database.session() as session:
        from atelier.server.accounts import sign_up

        sign_up(session, "erin", "erin's long password")
        sign_up(session, "frank", "frank's long password")
        admin_key = create_key(session, "erin", "admin")[0].prefix
        erins_user_key = create_key(session, "erin", "user")[1]
    image = make(server, keys["alice"], "an olive ring", n=1)[0]
    call(server, keys["alice"], "POST", f"/v1/assets/{image}/publish")
    call(server, keys["bob"], "POST", f"/v1/gallery/{image}/report", {"reason": "off-topic"})

    erin, frank = Browser(server), Browser(server)
    for browser, name in ((erin, "erin"), (frank, "frank")):
        password = f"{name}'s long password"
        status, _, body = browser.call("POST", "/studio/api/login", {"name": name, "password": password})
        assert status == 200, body
        browser.csrf = body["csrf_token"]
    assert erin.call("GET", "/studio/api/session")[2]["admin"] is True
    assert frank.call("GET", "/studio/api/session")[2]["admin"] is False
    assert frank.call("GET", "/v1/admin/reports")[0] == 403
    assert frank.call("POST", f"/v1/admin/assets/{image}/hide", {"hidden": True})[0] == 403
    assert call(server, erins_user_key, "GET", "/v1/admin/reports")[0] == 403       # a user key stays a user key

    reports = erin.call("GET", "/v1/admin/reports")[2]["data"]
    assert [(entry["id"], entry["reasons"]) for entry in reports] == [(image, ["off-topic"])]
    assert erin.call("POST", f"/v1/admin/assets/{image}/hide", {"hidden": True}, csrf=False)[0] == 403   # CSRF
    assert erin.call("POST", f"/v1/admin/assets/{image}/hide", {"hidden": True})[2]["hidden"] is True
    listed = {entry["id"]: entry for entry in call(server, keys["alice"], "GET", "/v1/assets?limit=100")[2]["data"]}
    assert listed[image]["hidden"] is True and listed[image]["published"] is True

    with database.session() as session:
        from atelier.server.accounts import revoke_key

        revoke_key(session, admin_key)
    database.close()
    assert erin.call("GET", "/studio/api/session")[2]["admin"] is False
    assert erin.call("GET", "/v1/admin/reports")[0] == 403
