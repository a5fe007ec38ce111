"""Screenshots of the studio for the README: a server with the shipped default model (atelier/weights/default)
in a temporary data folder, driven through each screen by headless Chromium (Debian's, through
Playwright), written as small PNGs to docs/studio/. Two people and a moderator (a user with an
admin key) fill the community screens: gallery, profile, account and moderation.

    .venv/bin/python scripts/studio_screenshots.py [--out docs/studio] [--size 1280x800]
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "studio screenshots"


def serve(data: Path):
    from atelier.server.app import create_app
    from atelier.server.config import ServerSettings

    app = create_app(ServerSettings(data=data, threads=2, rate_limit=10_000))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


def save(page, out: Path, name: str) -> None:
    """The page as a PNG of at most 256 colours (a dark UI loses nothing visible), to keep the repository small."""
    path = out / f"{name}.png"
    page.screenshot(path=path)
    with Image.open(path) as shot:
        small = shot.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {path.stat().st_size // 1024} KiB")


def make_moderator(data: Path, name: str) -> None:
    """A studio user who holds an admin key (as `atelier keys create --user NAME --scope admin` makes)."""
    from atelier.server import accounts
    from atelier.server.config import ServerSettings
    from atelier.server.db import Database

    database = Database(ServerSettings(data=data).database_url)
    with database.session() as session:
        accounts.sign_up(session, name, PASSWORD)
        accounts.create_key(session, name, "admin")
    database.close()


def sign_up(page, url: str, name: str) -> None:
    page.goto(url + "/")
    page.locator("#auth-name").wait_for()
    page.click("#tab-signup")
    page.fill("#auth-name", name)
    page.fill("#auth-password", PASSWORD)
    page.click("#auth-submit")
    page.locator("#who-name").wait_for()


def publish(page, job: int, tiles: range) -> None:
    """Publish tiles of the job card `job` (0: the newest) in Generate."""
    card = page.locator("#generate-results .job").nth(job)
    for index in tiles:
        tile = card.locator(".tile").nth(index)
        tile.get_by_role("button", name="Publish").click()
        tile.locator(".publish", has_text="Unpublish").wait_for()


def quiet(page) -> None:
    """No toast, and the pointer out of the way, for a screenshot."""
    page.evaluate("() => { document.getElementById('toast').hidden = true; "
                  "document.querySelectorAll('.view').forEach((view) => { view.scrollTop = 0; }); }")
    page.mouse.move(5, 795)


def images_loaded(page, selector: str) -> None:
    page.wait_for_function(f"() => [...document.querySelectorAll({selector!r})].every(i => i.complete "
                           f"&& i.naturalWidth > 0)")


def generate(page, prompt: str, n: int, seed: int | None) -> None:
    page.click("a[data-view=generate]")
    page.fill("#prompt", prompt)
    page.fill("#count", str(n))
    page.fill("#seed", "" if seed is None else str(seed))
    before = page.locator("#generate-results .job").count()
    page.click("#generate-submit")
    page.locator("#generate-results .job").nth(0).wait_for()
    page.wait_for_function(f"() => document.querySelectorAll('#generate-results .job').length > {before} && "
                           "document.querySelector('#generate-results .job').dataset.status === 'succeeded'",
                           timeout=300_000)
    images_loaded(page, "#generate-results .tile img")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "studio")
    parser.add_argument("--size", default="1280x800")
    args = parser.parse_args()
    width, height = (int(part) for part in args.size.split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as data:
        server, thread, url = serve(Path(data))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": width, "height": height})
                page.set_default_timeout(120_000)
                page.goto(url + "/")
                page.locator("#auth-name").wait_for()
                page.click("#tab-signup")
                page.fill("#auth-name", "ada")
                page.fill("#auth-password", PASSWORD)
                save(page, args.out, "sign-in")
                page.click("#auth-submit")
                page.locator("#who-name").wait_for()

                generate(page, "a blue square on a striped background", 2, 3)
                generate(page, "a red star above two blue circles", 4, 7)
                save(page, args.out, "generate")

                tiles = page.locator("#generate-results .job").first.locator(".tile")
                tiles.nth(0).get_by_role("button", name="Compare").click()
                tiles.nth(1).get_by_role("button", name="Compare").click()
                page.click("a[data-view=compare]")
                images_loaded(page, ".side-by-side img")
                page.wait_for_timeout(300)
                save(page, args.out, "compare")

                tiles = page.locator("#generate-results .job").first.locator(".tile")
                page.click("a[data-view=generate]")
                tiles.nth(0).get_by_role("button", name="Edit").click()
                page.locator("#stage-inner").wait_for()
                page.click("#auto-background")
                page.locator("#toast").wait_for()
                page.fill("#edit-prompt", "a red star above two blue circles on a green background")
                page.fill("#edit-count", "2")
                page.click("#edit-apply")
                page.wait_for_function("() => document.querySelector('#edit-results .job')?.dataset.status === "
                                       "'succeeded'", timeout=300_000)
                images_loaded(page, "#edit-results .tile img")
                page.evaluate("() => { document.getElementById('toast').hidden = true; }")
                box = page.locator("#mask-canvas").bounding_box()
                page.mouse.move(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.8)
                save(page, args.out, "edit")

                page.click("a[data-view=history]")
                page.locator("#history-grid .tile img").first.wait_for()
                images_loaded(page, "#history-grid img")
                save(page, args.out, "history")

                page.click("a[data-view=keys]")
                page.click("#key-create")
                page.locator("#key-text").wait_for()
                page.wait_for_timeout(200)
                save(page, args.out, "keys")

                # the community: ada keeps one candidate and publishes; ben publishes, likes, reports and
                # looks at ada's profile; ada allows training; the moderator sees ben's report
                page.click("a[data-view=generate]")
                page.locator("#generate-results .job").first.locator(".tile").nth(0).get_by_role(
                    "button", name="Keep").click()
                publish(page, 0, range(3))
                publish(page, 1, range(2))
                ben = browser.new_page(viewport={"width": width, "height": height})
                ben.set_default_timeout(120_000)
                sign_up(ben, url, "ben")
                generate(ben, "a green heart on a white background", 2, 11)
                publish(ben, 0, range(2))
                ben.click("a[data-view=gallery]")
                ben.locator("#gallery-grid .tile").nth(4).wait_for()
                adas = ben.locator("#gallery-grid .tile").filter(has=ben.locator(".meta a", has_text="ada"))
                for index in (0, 2):
                    adas.nth(index).locator(".like").click()
                    adas.nth(index).locator(".like[aria-pressed=true]").wait_for()
                adas.nth(4).get_by_role("button", name="Report").click()
                ben.fill("#report-reason", "looks like a copy of my poster")
                ben.click("#report-submit")
                ben.locator("#report-dialog").wait_for(state="hidden")
                images_loaded(ben, "#gallery-grid img")
                quiet(ben)
                save(ben, args.out, "gallery")

                adas.first.locator(".meta a").click()
                ben.locator("#profile-stats").wait_for()
                ben.locator("#profile-grid .tile img").first.wait_for()
                images_loaded(ben, "#profile-grid img")
                quiet(ben)
                save(ben, args.out, "profile")

                page.click("a[data-view=account]")
                page.locator("#consent:enabled").wait_for()
                page.click("#consent")
                page.locator("#consent-status", has_text="Saved").wait_for()
                quiet(page)
                save(page, args.out, "account")

                make_moderator(Path(data), "moderator")
                moderator = browser.new_page(viewport={"width": width, "height": height})
                moderator.set_default_timeout(120_000)
                moderator.goto(url + "/")
                moderator.fill("#auth-name", "moderator")
                moderator.fill("#auth-password", PASSWORD)
                moderator.click("#auth-submit")
                moderator.locator("#nav-moderation").wait_for()
                moderator.click("#nav-moderation")
                moderator.locator(".report-card img").first.wait_for()
                images_loaded(moderator, ".report-card img")
                quiet(moderator)
                save(moderator, args.out, "moderation")
                browser.close()
        finally:
            server.should_exit = True
            thread.join(timeout=30)


if __name__ == "__main__":
    main()
