"""The studio in a real browser: Debian's headless Chromium driven by Playwright (never a browser
download). One user signs up, generates, reuses a seed, compares two results, downloads one,
paints a mask and applies an edit, loads an automatic background mask, searches the history and
makes an API key; a second user sees none of it; a bad password and a taken name are shown in
plain words. A screenshot of each screen goes to $ATELIER_SCREENSHOTS (default: a temp folder).

Without /usr/bin/chromium or playwright the tests skip with the reason, and fail where CI=true
(scripts/setup.sh --dev installs both)."""

import io
import re

import pytest
from PIL import Image

from atelier.pipeline.metadata import read_info
from atelier.server.config import ServerSettings
from tests.api_server import start_server

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PROMPT = "a red star above two blue circles"
PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def server(pipe, tmp_path_factory):

    settings = ServerSettings(data=tmp_path_factory.mktemp("studio-browser"), threads=1, rate_limit=100_000)
    live = start_server(settings, pipe)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def alice(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(server.url + "/")
    yield page
    context.close()


def _expect():
    from playwright.sync_api import expect

    return expect


def sign_up(page, name):
    page.click("#tab-signup")
    page.fill("#auth-name", name)
    page.fill("#auth-password", PASSWORD)
    page.click("#auth-submit")
    _expect()(page.locator("#who-name")).to_have_text(name)


def test_a_bad_password_is_refused_in_plain_words(alice, shots):
    expect = _expect()
    expect(alice.locator("#auth")).to_be_visible()
    alice.screenshot(path=shots / "sign-in.png")
    alice.fill("#auth-name", "nobody")
    alice.fill("#auth-password", "wrong password")
    alice.click("#auth-submit")
    expect(alice.locator("#auth-error")).to_have_text("Wrong user name or password.")
    alice.screenshot(path=shots / "sign-in-error.png")


def test_sign_up_and_generate_with_live_progress(alice, shots):
    expect = _expect()
    sign_up(alice, "alice")
    expect(alice.locator("#view-generate")).to_be_visible()
    alice.fill("#prompt", PROMPT)
    alice.fill("#count", "2")
    alice.fill("#steps", "3")
    alice.click("#generate-submit")
    card = alice.locator("#generate-results .job").first
    expect(card.locator(".progress")).to_have_count(1)
    expect(card).to_have_attribute("data-status", "succeeded")
    expect(card.locator(".tile img")).to_have_count(2)
    alice.wait_for_function("() => [...document.querySelectorAll('#generate-results .tile img')].every(i => i.complete "
                            "&& i.naturalWidth > 0)")
    alice.screenshot(path=shots / "generate.png")


def test_use_this_seed_sets_and_locks_it_and_the_next_image_uses_it(alice):
    expect = _expect()
    tile = alice.locator("#generate-results .tile").first
    seed = re.search(r"seed (\d+)", tile.locator(".meta").inner_text()).group(1)
    tile.get_by_role("button", name="Use seed").click()
    expect(alice.locator("#seed")).to_have_value(seed)
    expect(alice.locator("#seed-lock")).to_have_attribute("aria-pressed", "true")
    alice.fill("#count", "1")
    alice.click("#generate-submit")
    expect(alice.locator("#generate-results .job")).to_have_count(2)
    newest = alice.locator("#generate-results .job").first
    expect(newest).to_have_attribute("data-status", "succeeded")
    expect(newest.locator(".tile .meta")).to_contain_text(f"seed {seed}")


def test_compare_two_results_side_by_side_and_overlaid(alice, shots):
    expect = _expect()
    tiles = alice.locator("#generate-results .job").nth(1).locator(".tile")
    tiles.nth(0).get_by_role("button", name="Compare").click()
    tiles.nth(1).get_by_role("button", name="Compare").click()
    expect(alice.locator("#compare-count")).to_have_text("2")
    alice.click("a[data-view=compare]")
    expect(alice.locator(".side-by-side img")).to_have_count(2)
    expect(alice.locator(".settings-table tr.differs")).to_have_count(1)        # the seeds differ, nothing else
    alice.wait_for_function("() => [...document.querySelectorAll('.side-by-side img')].every(i => i.complete)")
    alice.screenshot(path=shots / "compare.png")
    alice.click("#compare-overlay")
    expect(alice.locator(".overlay img")).to_have_count(2)
    alice.locator(".overlay-slider").fill("20")
    assert "20%" in alice.locator(".overlay-top").get_attribute("style")
    alice.screenshot(path=shots / "compare-overlay.png")


def test_download_is_a_png_with_its_settings(alice, tmp_path):
    alice.click("a[data-view=generate]")
    tile = alice.locator("#generate-results .tile").first
    with alice.expect_download() as download:
        tile.get_by_role("link", name="Download").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert re.fullmatch(r"atelier-\d+-img_\w+\.png", saved.name)
    assert saved.read_bytes().startswith(b"\x89PNG")
    info = read_info(saved)
    assert info is not None and info.prompt == PROMPT and info.steps == 3


MASK_COVERAGE = """() => {
  const c = document.getElementById('mask-canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let on = 0; for (let i = 3; i < d.length; i += 4) if (d[i] >= 128) on++;
  return on / (c.width * c.height);
}"""


def test_paint_a_mask_and_apply_an_edit(alice, shots):
    expect = _expect()
    alice.locator("#generate-results .tile").first.get_by_role("button", name="Edit").click()
    expect(alice.locator("#view-edit")).to_be_visible()
    expect(alice.locator("#stage-inner")).to_be_visible()
    box = alice.locator("#mask-canvas").bounding_box()
    alice.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    alice.mouse.down()
    for step in range(1, 11):
        alice.mouse.move(box["x"] + box["width"] * (0.3 + 0.04 * step), box["y"] + box["height"] * 0.5)
    alice.mouse.up()
    painted = alice.evaluate(MASK_COVERAGE)
    assert 0.02 < painted < 0.5
    alice.keyboard.press("Control+z")                    # undo takes the stroke back ...
    assert alice.evaluate(MASK_COVERAGE) == 0
    alice.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    alice.mouse.down()                                   # ... and it is painted again
    alice.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.6, steps=8)
    alice.mouse.up()
    assert alice.evaluate(MASK_COVERAGE) > 0.02
    opacity = "() => getComputedStyle(document.getElementById('mask-canvas')).opacity"
    assert alice.evaluate(opacity) == "0.6"
    alice.fill("#mask-opacity", "25")                    # a range input: fill sets it and fires input
    expect(alice.locator("#mask-opacity-value")).to_have_text("25%")
    assert alice.evaluate(opacity) == "0.25" and alice.evaluate(MASK_COVERAGE) > 0.02  # display only
    alice.fill("#edit-prompt", "a green heart above two blue circles")
    alice.fill("#edit-count", "1")
    alice.screenshot(path=shots / "edit-mask.png")
    alice.click("#edit-apply")
    card = alice.locator("#edit-results .job").first
    expect(card).to_have_attribute("data-status", "succeeded")
    expect(card.locator(".tile img")).to_have_count(1)
    alice.wait_for_function("() => [...document.querySelectorAll('#edit-results .tile img')].every(i => i.complete)")
    alice.screenshot(path=shots / "edit-result.png")


def test_replace_background_shows_the_automatic_mask_for_refining(alice, shots, tmp_path):
    from atelier.world.images.stream import make_sample

    expect = _expect()
    scene = tmp_path / "scene.png"
    Image.fromarray(make_sample(3, 5, size=64, split="all").image).save(scene)
    alice.set_input_files("#edit-file", str(scene))
    expect(alice.locator("#edit-source-label")).to_contain_text("scene.png")
    alice.click("#auto-background")
    expect(alice.locator("#toast")).to_contain_text("Automatic background mask loaded")
    coverage = alice.evaluate(MASK_COVERAGE)
    assert 0.3 < coverage < 1
    alice.screenshot(path=shots / "edit-auto-mask.png")


def test_history_search_finds_the_prompt(alice, shots):
    expect = _expect()
    alice.click("a[data-view=history]")
    expect(alice.locator("#history-grid .tile")).to_have_count(4)    # 2 + 1 generated, 1 edited
    alice.fill("#history-q", "GREEN HEART")
    alice.click("#history-search button")
    expect(alice.locator("#history-grid .tile")).to_have_count(1)
    alice.fill("#history-q", "")
    alice.click("#history-search button")
    expect(alice.locator("#history-grid .tile")).to_have_count(4)
    alice.wait_for_function("() => [...document.querySelectorAll('#history-grid img')].every(i => i.complete)")
    alice.screenshot(path=shots / "history.png")
    alice.fill("#history-q", "no such words")
    alice.click("#history-search button")
    expect(alice.locator("#history-grid .empty")).to_contain_text("No images whose prompt contains")


def test_the_key_page_makes_a_key_shown_once(alice, shots):
    expect = _expect()
    alice.click("a[data-view=keys]")
    expect(alice.locator("#keys-body tr")).to_have_count(1)
    expect(alice.locator("#keys-body")).to_contain_text("this studio")
    alice.click("#key-create")
    expect(alice.locator("#key-text")).to_have_text(re.compile(r"^atl_[\w-]{43}$"))
    expect(alice.locator("#keys-body tr")).to_have_count(2)
    alice.screenshot(path=shots / "keys.png")


def test_a_second_user_sees_none_of_the_first_users_items(alice, browser, server):
    expect = _expect()
    asset_id = alice.locator("#generate-results .tile").first.get_attribute("data-id")
    alice.click("#sign-out")
    expect(alice.locator("#auth")).to_be_visible()
    alice.click("#tab-signup")
    alice.fill("#auth-name", "alice")
    alice.fill("#auth-password", PASSWORD)
    alice.click("#auth-submit")
    expect(alice.locator("#auth-error")).to_contain_text("taken")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    bob = context.new_page()
    bob.goto(server.url + "/")
    sign_up(bob, "bob")
    expect(bob.locator("#generate-results .job")).to_have_count(0)
    bob.click("a[data-view=history]")
    expect(bob.locator("#history-grid .empty")).to_contain_text("No images yet")
    status = bob.evaluate("async (id) => (await fetch('/v1/assets/' + id)).status", asset_id)
    assert status == 404
    bob.click("a[data-view=keys]")
    expect(bob.locator("#keys-body tr")).to_have_count(1)
    context.close()


def test_the_screenshots_are_real_pictures(shots):
    names = {path.name for path in shots.glob("*.png")}
    assert {"sign-in.png", "generate.png", "compare.png", "edit-mask.png", "history.png", "keys.png"} <= names
    for name in names:
        with Image.open(io.BytesIO((shots / name).read_bytes())) as image:
            assert image.size == (1280, 800)
