"""The community in a real browser (Debian's headless Chromium through Playwright, as in
tests/test_studio_browser.py): three people in three browser contexts on one server.

Alice generates two candidates, keeps one and publishes both; Bob finds them in the gallery by a
word of their prompt, likes and unlikes, reaches the like limit (said in plain words), opens
Alice's profile, remixes her image into the bit-identical image, and reports the other; the
moderator (a user with an admin key) sees the report in Moderation and hides it, and it is gone
from Bob's gallery; Alice is told it was hidden by a moderator when she publishes it again, and
turns training consent on; Bob deletes his account by typing his name, lands on the sign-in screen
and cannot sign in again, and his like is gone from Alice's image. A screenshot of each screen goes
to $ATELIER_SCREENSHOTS (default: a temp folder).

Without /usr/bin/chromium or playwright the tests skip with the reason, and fail where CI=true."""

import base64
import io
import re
import time

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from atelier.pipeline.metadata import read_info
from atelier.server.config import ServerSettings
from atelier.server.db import Database
from atelier.server.models import Feedback
from tests.api_server import start_server
from tests.test_studio_browser import PASSWORD, _expect

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PROMPT = "a violet star above a grey ring"
SEED = 5
LIKES_AN_HOUR = 2


@pytest.fixture(scope="module")
def server(pipe, tmp_path_factory):
    from atelier.server import accounts

    settings = ServerSettings(data=tmp_path_factory.mktemp("gallery-browser"), threads=1, rate_limit=100_000,
                              like_limit=LIKES_AN_HOUR)
    live = start_server(settings, pipe)
    database = Database(settings.database_url)
    with database.session() as session:            # the moderator: a studio user who holds an admin key
        accounts.sign_up(session, "moderator", PASSWORD)
        accounts.create_key(session, "moderator", "admin")
    database.close()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def errors():
    return []


def _page(browser, server, errors):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.url + "/")
    return context, page


@pytest.fixture(scope="module")
def alice(browser, server, errors):
    context, page = _page(browser, server, errors)
    yield page
    context.close()


@pytest.fixture(scope="module")
def bob(browser, server, errors):
    context, page = _page(browser, server, errors)
    yield page
    context.close()


@pytest.fixture(scope="module")
def moderator(browser, server, errors):
    context, page = _page(browser, server, errors)
    yield page
    context.close()


@pytest.fixture(scope="module")
def ids():
    """The ids of Alice's two images: 'kept' (which Bob reports) and 'other' (which Bob likes and remixes)."""
    return {}


def sign_in(page, name, signup=True):
    page.click("#tab-signup" if signup else "#tab-signin")
    page.fill("#auth-name", name)
    page.fill("#auth-password", PASSWORD)
    page.click("#auth-submit")
    _expect()(page.locator("#who-name")).to_have_text(name)


def images_loaded(page, selector):
    page.wait_for_function(f"() => [...document.querySelectorAll({selector!r})].every(i => i.complete "
                           f"&& i.naturalWidth > 0)")


def quiet(page):
    """No toast in a screenshot."""
    page.evaluate("() => { document.getElementById('toast').hidden = true; }")


def tile(page, grid, asset_id):
    return page.locator(f"#{grid} .tile[data-id='{asset_id}']")


def png(page, url):
    """The pixels and bytes of an image as this page's user fetches it."""
    data = base64.b64decode(page.evaluate("""async (url) => {
        const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
        let text = ""; for (const byte of bytes) text += String.fromCharCode(byte);
        return btoa(text);
    }""", url))
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), data


def until(page, condition, what, seconds=30):
    """Let the page's events run until `condition()` holds (Playwright's dispatcher runs in this thread,
    so a blocking wait would starve it)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        page.wait_for_timeout(20)


def test_alice_keeps_one_candidate_and_publishes_both(alice, server, ids, shots):
    expect = _expect()
    sign_in(alice, "alice")
    expect(alice.locator("#nav-moderation")).to_be_hidden()
    alice.fill("#prompt", PROMPT)
    alice.fill("#count", "2")
    alice.fill("#steps", "3")
    alice.fill("#seed", str(SEED))
    alice.click("#generate-submit")
    card = alice.locator("#generate-results .job").first
    expect(card).to_have_attribute("data-status", "succeeded")
    tiles = card.locator(".tile")
    expect(tiles).to_have_count(2)
    ids["kept"], ids["other"] = tiles.nth(0).get_attribute("data-id"), tiles.nth(1).get_attribute("data-id")

    # She keeps the second, then at once the first. The first request's answer is held back until after
    # the second click, as a loaded machine may do: UI and server must both end on her last click.
    held, answered = [], []
    alice.on("requestfinished", lambda request: answered.append(request.url) if request.url.endswith("/keep")
             else None)
    alice.route("**/v1/assets/*/keep", lambda route: held.append(route) if not held else route.continue_())
    tiles.nth(1).get_by_role("button", name="Keep").click()
    until(alice, lambda: held, "the first Keep request to reach the route")
    tiles.nth(0).get_by_role("button", name="Keep").click()          # changed her mind: the first one
    expect(tiles.nth(0).locator(".keep")).to_have_text("Kept")       # shown at once, before any answer
    held[0].continue_()
    until(alice, lambda: len(answered) == 2, "both Keep requests to be answered")
    expect(card.locator(".grid")).not_to_have_attribute("aria-busy", "true")
    alice.unroute("**/v1/assets/*/keep")
    expect(tiles.nth(0).locator(".keep")).to_have_text("Kept")
    expect(tiles.nth(0)).to_have_class(re.compile(r"\bkept\b"))
    expect(tiles.nth(1).locator(".keep")).to_have_attribute("aria-pressed", "false")
    expect(tiles.nth(1)).not_to_have_class(re.compile(r"\bkept\b"))
    with server.services.db.session() as session:
        assert set(session.scalars(select(Feedback.asset_id).where(Feedback.kind == "keep"))) == {ids["kept"]}

    for index in (0, 1):
        tiles.nth(index).get_by_role("button", name="Publish").click()
        expect(tiles.nth(index).locator(".publish")).to_have_text("Unpublish")
        expect(tiles.nth(index).locator(".state-tag")).to_have_text("Public")
    images_loaded(alice, "#generate-results .tile img")
    quiet(alice)
    alice.mouse.move(1200, 700)
    alice.screenshot(path=shots / "results-published.png")
    alice.click("a[data-view=history]")
    expect(alice.locator("#history-grid .tile .state-tag:visible")).to_have_count(2)
    expect(tile(alice, "history-grid", ids["kept"]).locator(".publish")).to_have_text("Unpublish")


def test_bob_finds_it_by_a_word_of_its_prompt_and_likes_it(bob, ids, shots):
    expect = _expect()
    sign_in(bob, "bob")
    bob.click("a[data-view=gallery]")
    expect(bob.locator("#gallery-grid .tile")).to_have_count(2)
    bob.fill("#gallery-q", "no such words")
    bob.click("#gallery-search button")
    expect(bob.locator("#gallery-grid .empty")).to_contain_text("No published images whose prompt contains")
    bob.fill("#gallery-q", "GREY")
    bob.click("#gallery-search button")
    expect(bob.locator("#gallery-grid .tile")).to_have_count(2)
    other = tile(bob, "gallery-grid", ids["other"])
    expect(other.locator(".meta a")).to_have_text("alice")

    like = other.locator(".like")
    like.click()
    expect(like).to_have_attribute("aria-pressed", "true")
    expect(like.locator(".count")).to_have_text("1")
    like.click()                                                       # a toggle
    expect(like).to_have_attribute("aria-pressed", "false")
    expect(like.locator(".count")).to_have_text("0")
    like.click()
    expect(like.locator(".count")).to_have_text("1")
    bob.click("#gallery-likes")                                        # most liked first
    expect(bob.locator("#gallery-grid .tile").first).to_have_attribute("data-id", ids["other"])
    images_loaded(bob, "#gallery-grid img")
    quiet(bob)
    bob.mouse.move(1200, 700)
    bob.screenshot(path=shots / "gallery.png")

    kept = tile(bob, "gallery-grid", ids["kept"]).locator(".like")     # the third like this hour: over the limit
    kept.click()
    expect(bob.locator("#toast")).to_contain_text(f"You can like at most {LIKES_AN_HOUR} times an hour")
    expect(kept.locator(".count")).to_have_text("0")
    expect(kept).to_have_attribute("aria-pressed", "false")


def test_bob_opens_alices_profile(bob, shots):
    expect = _expect()
    bob.locator("#gallery-grid .tile").first.locator(".meta a").click()
    expect(bob.locator("#view-profile")).to_be_visible()
    assert bob.url.endswith("#/profile/alice")
    expect(bob.locator("#profile-title")).to_have_text("alice")
    expect(bob.locator("#profile-published")).to_have_text("2")
    expect(bob.locator("#profile-likes")).to_have_text("1")
    expect(bob.locator("#profile-likes-label")).to_have_text("like received")
    expect(bob.locator("#profile-stats")).to_contain_text("Joined")
    expect(bob.locator("#profile-grid .tile")).to_have_count(2)
    expect(bob.locator("a[data-view=gallery]")).to_have_attribute("aria-current", "page")
    images_loaded(bob, "#profile-grid img")
    bob.screenshot(path=shots / "profile.png")


def test_remix_makes_the_same_image_again(bob, ids, tmp_path):
    expect = _expect()
    tile(bob, "profile-grid", ids["other"]).get_by_role("button", name="Remix").click()
    expect(bob.locator("#view-generate")).to_be_visible()
    expect(bob.locator("#prompt")).to_have_value(PROMPT)
    expect(bob.locator("#seed")).to_have_value(str(SEED + 1))          # image k of a batch has seed + k
    expect(bob.locator("#seed-lock")).to_have_attribute("aria-pressed", "true")
    expect(bob.locator("#steps")).to_have_value("3")
    expect(bob.locator("#count")).to_have_value("1")
    bob.click("#generate-submit")
    card = bob.locator("#generate-results .job").first
    expect(card).to_have_attribute("data-status", "succeeded")
    made = card.locator(".tile").first.get_attribute("data-id")
    original_url = bob.evaluate("async (id) => (await (await fetch('/v1/gallery/' + id)).json()).url", ids["other"])
    original, _ = png(bob, original_url)
    again, data = png(bob, f"/v1/assets/{made}")
    assert np.array_equal(original, again)
    (tmp_path / "again.png").write_bytes(data)
    info = read_info(tmp_path / "again.png")
    assert (info.prompt, info.seed, info.steps) == (PROMPT, SEED + 1, 3)


def test_bob_reports_the_other_image_with_a_reason(bob, ids, shots):
    expect = _expect()
    bob.click("a[data-view=gallery]")
    report = tile(bob, "gallery-grid", ids["kept"]).get_by_role("button", name="Report")
    report.click()
    expect(bob.locator("#report-dialog")).to_be_visible()
    bob.click("#report-submit")
    expect(bob.locator("#report-error")).to_have_text("Say in a few words what is wrong with this image.")
    bob.fill("#report-reason", "it copies my drawing")
    images_loaded(bob, "#gallery-grid img")
    bob.screenshot(path=shots / "report-dialog.png")
    bob.click("#report-submit")
    expect(bob.locator("#report-dialog")).to_be_hidden()
    expect(bob.locator("#toast")).to_have_text("Reported; a moderator will look at it.")
    expect(report).to_have_text("Reported")
    expect(report).to_be_disabled()


def test_the_moderator_hides_it_and_it_leaves_the_gallery(moderator, bob, ids, shots):
    expect = _expect()
    sign_in(moderator, "moderator", signup=False)
    expect(moderator.locator("#nav-moderation")).to_be_visible()
    moderator.click("#nav-moderation")
    card = moderator.locator(f".report-card[data-id='{ids['kept']}']")
    expect(card).to_have_count(1)
    expect(card.locator(".report-count")).to_have_text("1 report")
    expect(card.locator(".reasons")).to_have_text("it copies my drawing")
    images_loaded(moderator, ".report-card img")
    moderator.screenshot(path=shots / "moderation.png")
    card.get_by_role("button", name="Hide").click()
    expect(card).to_have_count(0)
    expect(moderator.locator("#moderation-list .empty")).to_contain_text("No open reports")

    bob.click("#gallery-new")
    expect(bob.locator("#gallery-grid .tile")).to_have_count(1)
    expect(tile(bob, "gallery-grid", ids["kept"])).to_have_count(0)
    expect(bob.locator("#nav-moderation")).to_be_hidden()
    bob.goto(bob.url.split("#")[0] + "#/moderation")                  # not for Bob: the gallery instead
    expect(bob.locator("#view-gallery")).to_be_visible()


def test_alice_is_told_a_moderator_hid_it(alice, ids):
    expect = _expect()
    alice.click("a[data-view=generate]")
    hidden = tile(alice, "generate-results", ids["kept"])
    hidden.get_by_role("button", name="Unpublish").click()
    expect(hidden.locator(".publish")).to_have_text("Publish")
    hidden.get_by_role("button", name="Publish").click()
    expect(alice.locator("#toast")).to_contain_text("A moderator hid this image after a report")
    expect(hidden.locator(".state-tag")).to_have_text("Hidden by a moderator")
    alice.click("a[data-view=history]")
    expect(tile(alice, "history-grid", ids["kept"]).locator(".state-tag")).to_have_text("Hidden by a moderator")
    expect(tile(alice, "history-grid", ids["other"]).locator(".state-tag")).to_have_text("Public")


def test_alice_turns_training_consent_on(alice, shots):
    expect = _expect()
    alice.click("a[data-view=account]")
    consent = alice.locator("#consent")
    expect(consent).to_be_enabled()
    expect(consent).not_to_be_checked()                                # off by default
    expect(alice.locator("#view-account")).to_contain_text("Off by default.")
    consent.click()
    expect(alice.locator("#consent-status")).to_contain_text("Saved")
    assert alice.evaluate("async () => (await (await fetch('/v1/account')).json()).training_consent") is True
    alice.reload()
    expect(alice.locator("#consent")).to_be_checked()
    alice.screenshot(path=shots / "account.png")


def test_bob_deletes_his_account_and_his_like_goes_with_him(bob, alice, ids, shots):
    expect = _expect()
    bob.click("a[data-view=account]")
    expect(bob.locator("#delete-name")).to_have_text("bob")
    expect(bob.locator("#delete-account")).to_be_disabled()
    bob.fill("#delete-confirm", "Bob")
    expect(bob.locator("#delete-account")).to_be_disabled()
    bob.fill("#delete-confirm", "bob")
    bob.click("#delete-account")
    expect(bob.locator("#auth")).to_be_visible()
    expect(bob.locator("#auth-notice")).to_contain_text("The account bob was deleted")
    expect(bob.locator("#auth-error")).to_be_hidden()
    expect(bob.locator("#tab-signin")).to_have_attribute("aria-selected", "true")
    bob.screenshot(path=shots / "account-deleted.png")
    bob.click("#tab-signin")
    bob.fill("#auth-name", "bob")
    bob.fill("#auth-password", PASSWORD)
    bob.click("#auth-submit")
    expect(bob.locator("#auth-error")).to_have_text("Wrong user name or password.")

    alice.click("a[data-view=gallery]")
    mine = tile(alice, "gallery-grid", ids["other"])
    expect(mine.locator(".like .count")).to_have_text("0")
    expect(mine.get_by_role("button", name="Report")).to_have_count(0)   # no reporting one's own images
    alice.locator(".tile .meta a").first.click()
    expect(alice.locator("#profile-likes")).to_have_text("0")
    expect(alice.locator("#profile-published")).to_have_text("1")


def test_no_script_errors_and_real_screenshots(errors, shots):
    assert errors == []
    for name in ("gallery", "profile", "account", "moderation", "report-dialog"):
        with Image.open(shots / f"{name}.png") as image:
            assert image.size == (1280, 800)
