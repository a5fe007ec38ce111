"""Screenshots of the studio for the README: a server with the shipped default model (weights/default)
in a temporary data folder, driven through each screen by headless Chromium (Debian's, through
Playwright), written as small PNGs to docs/studio/.

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
                browser.close()
        finally:
            server.should_exit = True
            thread.join(timeout=30)


if __name__ == "__main__":
    main()
