"""The studio's server side, without a browser: accounts (sign up, in and out, wrong password, name
taken), the session cookie and its CSRF token, a cookie acting like a key on /v1, privacy between
users, automatic masks, history search and paging, downloads, and the API-key page's endpoints."""

import base64
import http.cookiejar
import io
import json
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text

from atelier.server.config import ServerSettings
from tests.api_server import start_server

pytest.importorskip("argon2")

PROMPT = "a red star above two blue circles"


@pytest.fixture(scope="module")
def server(pipe, tmp_path_factory):

    settings = ServerSettings(data=tmp_path_factory.mktemp("studio"), threads=1, rate_limit=100_000,
                              signup_attempts=100)
    live = start_server(settings, pipe)
    yield live
    live.stop()


class Browser:
    """A cookie jar and the CSRF token, like the studio page keeps them."""

    def __init__(self, server):
        self.server, self.jar, self.csrf = server, http.cookiejar.CookieJar(), None
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def raw(self, method, path, body=None, headers=None, csrf=True):
        data = None if body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", **(headers or {})}
        if csrf and self.csrf:
            sent["X-CSRF-Token"] = self.csrf
        request = urllib.request.Request(self.server.url + path, method=method, data=data, headers=sent)
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    def call(self, method, path, body=None, headers=None, csrf=True):
        status, headers, data = self.raw(method, path, body, headers, csrf)
        return status, headers, json.loads(data)

    def sign_up(self, name, password="correct horse"):
        status, headers, body = self.call("POST", "/studio/api/signup", {"name": name, "password": password})
        assert status == 201, body
        self.csrf = body["csrf_token"]
        return headers, body

    def cookie(self):
        return next(cookie for cookie in self.jar if cookie.name == "atelier_session")


def wait_for(browser, job_id, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        job = browser.call("GET", f"/v1/jobs/{job_id}")[2]
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def generate(browser, prompt=PROMPT, **settings):
    status, _, job = browser.call("POST", "/v1/jobs", {"task": "text_to_image", "input": {"prompt": prompt,
                                                                                           **settings}})
    assert status == 202, job
    job = wait_for(browser, job["id"])
    assert job["status"] == "succeeded", job
    return job


def test_the_page_and_its_files_are_served_from_here(server):
    with urllib.request.urlopen(server.url + "/", timeout=30) as response:
        page = response.read().decode()
        policy = response.headers["Content-Security-Policy"]
    assert "<title>Atelier Studio</title>" in page and "/studio/static/app.js" in page
    assert "default-src 'self'" in policy
    assert "http://" not in page and "https://" not in page        # nothing from elsewhere: works offline
    for name in ("app.js", "style.css"):
        with urllib.request.urlopen(f"{server.url}/studio/static/{name}", timeout=30) as response:
            assert response.status == 200 and b"https://" not in response.read()


def test_sign_up_sets_an_http_only_cookie_and_the_session_says_who(server):
    browser = Browser(server)
    headers, body = browser.sign_up("ada")
    assert body["user"]["name"] == "ada" and len(body["csrf_token"]) >= 40
    set_cookie = headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie and "Path=/" in set_cookie
    assert "Secure" not in set_cookie            # plain http on loopback; https requests get Secure
    token = browser.cookie().value
    assert len(token) >= 43
    status, _, session = browser.call("GET", "/studio/api/session")
    assert status == 200 and session["user"]["name"] == "ada" and session["csrf_token"] == body["csrf_token"]
    with server.services.db.engine.connect() as connection:
        stored = "\n".join(str(row) for row in connection.execute(text("SELECT * FROM sessions")))
        password = connection.execute(text("SELECT password_hash FROM users WHERE name = 'ada'")).scalar()
    assert token not in stored and "correct horse" not in password and password.startswith("$argon2id$")


def test_names_and_passwords_are_checked_in_plain_words(server):
    browser = Browser(server)
    browser.sign_up("grace")
    status, _, body = Browser(server).call("POST", "/studio/api/signup", {"name": "grace", "password": "12345678"})
    assert status == 409 and "taken" in body["error"]["message"]
    status, _, body = Browser(server).call("POST", "/studio/api/signup", {"name": "g", "password": "12345678"})
    assert status == 400 and "3 to 40 characters" in body["error"]["message"]
    status, _, body = Browser(server).call("POST", "/studio/api/signup", {"name": "gracie", "password": "short"})
    assert status == 400 and "at least 8 characters" in body["error"]["message"]


def test_sign_in_and_out_and_a_wrong_password_or_name_get_the_same_answer(server):
    Browser(server).sign_up("linus", "a long password")
    browser = Browser(server)
    wrong_password = browser.call("POST", "/studio/api/login", {"name": "linus", "password": "not the one"})
    wrong_name = browser.call("POST", "/studio/api/login", {"name": "nobody-here", "password": "a long password"})
    assert wrong_password[0] == wrong_name[0] == 401
    assert wrong_password[2]["error"]["message"] == wrong_name[2]["error"]["message"] == "Wrong user name or password."
    status, _, body = browser.call("POST", "/studio/api/login", {"name": "linus", "password": "a long password"})
    assert status == 200 and body["user"]["name"] == "linus"
    browser.csrf = body["csrf_token"]
    assert browser.call("GET", "/studio/api/session")[0] == 200
    token = browser.cookie().value
    status, _, _ = browser.call("POST", "/studio/api/logout")
    assert status == 200 and not [cookie for cookie in browser.jar if cookie.name == "atelier_session"]
    status, _, body = browser.call("GET", "/studio/api/session")
    assert status == 401
    replayed = urllib.request.Request(server.url + "/v1/assets", headers={"Cookie": f"atelier_session={token}"})
    with pytest.raises(urllib.error.HTTPError) as ended:     # the token of an ended session is dead
        urllib.request.urlopen(replayed, timeout=30)
    assert ended.value.code == 401 and "Sign in again" in json.loads(ended.value.read())["error"]["message"]


def test_sign_in_attempts_are_limited_per_name_and_address(server):
    browser = Browser(server)
    answers = [browser.call("POST", "/studio/api/login", {"name": "mallory", "password": "guess number"})[0]
               for _ in range(11)]
    assert answers[:10] == [401] * 10 and answers[10] == 429


def test_a_change_without_the_csrf_token_is_refused(server):
    browser = Browser(server)
    browser.sign_up("csrf-victim")
    body = {"task": "text_to_image", "input": {"prompt": PROMPT}}
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        status, _, answer = browser.call("POST", "/v1/jobs", body, headers, csrf=False)
        assert status == 403 and "security token" in answer["error"]["message"], answer
    status, _, _ = browser.call("POST", "/studio/api/logout", csrf=False)
    assert status == 403                         # no signing out by a cross-site form either
    assert browser.call("GET", "/v1/jobs")[0] == 200        # reading needs no token
    assert browser.call("POST", "/v1/jobs", body)[0] == 202


def test_the_cookie_acts_as_the_users_studio_key_and_users_are_private(server):
    alice, bob = Browser(server), Browser(server)
    alice.sign_up("alice-s")
    bob.sign_up("bob-s")
    job = generate(alice, n=2, seed=11, steps=3)
    asset_id = job["output"]["images"][0]["id"]
    status, headers, data = alice.raw("GET", f"/v1/assets/{asset_id}?download=1")
    assert status == 200 and data.startswith(b"\x89PNG")
    assert headers["Content-Disposition"] == f'attachment; filename="atelier-11-{asset_id}.png"'
    for path in (f"/v1/jobs/{job['id']}", f"/v1/assets/{asset_id}", f"/v1/jobs/{job['id']}/events"):
        status, _, body = bob.call("GET", path)
        assert status == 404, path
    assert bob.call("GET", "/v1/assets")[2]["data"] == []
    status, _, body = bob.call("POST", "/v1/jobs", {"task": "edit", "input": {"image": asset_id, "prompt": "x"}})
    assert status == 400 and "no asset" in body["error"]["message"]
    usage = alice.call("GET", "/v1/usage")[2]["data"]
    assert usage[0]["images"] == 2                    # counted against the session's studio key


def test_history_is_searched_by_prompt_and_paged(server):
    browser = Browser(server)
    browser.sign_up("historian")
    generate(browser, "a Green Square on a white background", n=1, steps=3)
    generate(browser, PROMPT, n=3, steps=3)
    everything = browser.call("GET", "/v1/assets?limit=100")[2]
    assert len(everything["data"]) == 4 and everything["has_more"] is False
    found = browser.call("GET", "/v1/assets?q=green%20SQUARE")[2]["data"]
    assert [asset["metadata"]["prompt"] for asset in found] == ["a Green Square on a white background"]
    assert browser.call("GET", "/v1/assets?q=100%25")[2]["data"] == []       # % is a character, not a wildcard
    first = browser.call("GET", "/v1/assets?limit=2")[2]
    assert first["has_more"] is True and len(first["data"]) == 2
    rest = browser.call("GET", f"/v1/assets?limit=2&before={first['data'][-1]['id']}")[2]
    assert rest["has_more"] is False and len(rest["data"]) == 2
    assert {a["id"] for a in first["data"]} | {a["id"] for a in rest["data"]} == {a["id"] for a in everything["data"]}
    status, _, body = Browser(server).call("GET", f"/v1/assets?before={first['data'][0]['id']}",
                                           headers={"Authorization": f"Bearer {server.add_user('stranger')}"})
    assert status == 400 and "no image of yours" in body["error"]["message"]


def _scene_png() -> bytes:
    from atelier.world.images.stream import make_sample

    sample = make_sample(3, 5, size=64, split="all")
    buffer = io.BytesIO()
    Image.fromarray(sample.image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_automatic_masks_for_background_and_subject(server):
    browser = Browser(server)
    browser.sign_up("masker")
    scene = base64.b64encode(_scene_png()).decode()
    masks = {}
    for kind in ("background", "subject"):
        status, _, body = browser.call("POST", "/v1/masks", {"image": scene, "kind": kind})
        assert status == 200, body
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["mask"]))).convert("L"))
        assert mask.shape == (64, 64) and body["objects"] >= 1 and (body["width"], body["height"]) == (64, 64)
        masks[kind] = mask == 255
    assert 0 < masks["background"].sum() < 64 * 64 and masks["subject"].any()
    assert (masks["subject"] | masks["background"]).all()        # the subject, grown, meets the background
    pipe = server.services.pipeline
    assert np.array_equal(masks["background"], ~pipe._subject(Image.open(io.BytesIO(_scene_png()))))
    status, _, body = browser.call("POST", "/v1/masks", {"image": scene, "kind": "subject", "which": 99})
    assert status == 400 and "out of range" in body["error"]["message"]
    flat = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 200, 200)).save(flat, format="PNG")
    status, _, body = browser.call("POST", "/v1/masks", {"image": base64.b64encode(flat.getvalue()).decode(),
                                                         "kind": "background"})
    assert status == 400 and "Paint the area" in body["error"]["message"]
    assert browser.call("POST", "/v1/masks", {"image": scene, "kind": "background"}, csrf=False)[0] == 403


def test_the_key_page_lists_makes_and_revokes_only_the_users_own_keys(server):
    browser, other = Browser(server), Browser(server)
    browser.sign_up("keymaker")
    other.sign_up("keymaker-2")
    keys = browser.call("GET", "/studio/api/keys")[2]["data"]
    assert [key["label"] for key in keys] == ["studio"]       # made at sign-up, its text never shown
    status, _, made = browser.call("POST", "/studio/api/keys")
    assert status == 201 and made["key"].startswith("atl_") and made["prefix"] == made["key"][:12]
    request = urllib.request.Request(server.url + "/v1/models", headers={"Authorization": f"Bearer {made['key']}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    listed = browser.call("GET", "/studio/api/keys")[2]["data"]
    assert [key["prefix"] for key in listed][-1] == made["prefix"] and "key" not in listed[-1]
    assert other.call("DELETE", f"/studio/api/keys/{made['prefix']}")[0] == 404
    status, _, body = browser.call("DELETE", f"/studio/api/keys/{keys[0]['prefix']}")
    assert status == 400 and "sign out" in body["error"]["message"]
    status, _, revoked = browser.call("DELETE", f"/studio/api/keys/{made['prefix']}")
    assert status == 200 and revoked["revoked"] is not None
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401
    status, _, body = Browser(server).call("GET", "/studio/api/keys",
                                           headers={"Authorization": f"Bearer {server.add_user('keyholder')}"})
    assert status == 401                      # a key cannot manage keys: only a signed-in person can
