"""The demo in a real browser (Debian's Chromium driven by Playwright): generate, watch the video
and the state picture change between chunks, switch to static mode, compare. Screenshots are
saved in the test's output folder."""

import io
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from conftest import SHIPPED_CHUNK_FRAMES

from adastate import demo

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (`apt-get install chromium`)")

WATCH = """() => {
    const text = (sel) => { const e = document.querySelector(sel); return e ? e.innerText : ""; };
    const video = (sel) => { const v = document.querySelector(sel + " video");
        return v ? {ready: v.readyState, duration: v.duration || 0, width: v.videoWidth} : null; };
    const image = (sel) => { const i = document.querySelector(sel + " img"); return i ? i.src : null; };
    const width = (sel) => { const i = document.querySelector(sel + " img"); return i ? i.naturalWidth : 0; };
    // the browser-drawn curve has one point mark per chunk and mode, labelled with its values
    const points = (sel, mode) => [...document.querySelectorAll(sel + ' svg [aria-roledescription="point"]')]
        .filter(p => (p.getAttribute("aria-label") || "").includes("mode: " + mode)).length;
    return {status: text("#status"), compare: text("#status-compare"), video: video("#video"),
            state: image("#state"), adaptive: video("#video-adaptive"), static: video("#video-static"),
            filmstrip: {adaptive: width("#filmstrip-adaptive"), static: width("#filmstrip-static")},
            revert: {adaptive: points("#revert-curve", "adaptive state"), static: points("#revert-curve", "static anchor")},
            verdict: text("#verdict")};
}"""


@pytest.fixture
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1300, "height": 1100})
        page.goto(app_url)
        page.wait_for_selector("#generate")
        yield page
        browser.close()


def watch(page, until, timeout=180):
    """Poll the page until `until(snapshot)`; return every distinct snapshot seen."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        snapshot = page.evaluate(WATCH)
        if not seen or snapshot != seen[-1]:
            seen.append(snapshot)
        if until(snapshot):
            return seen
        time.sleep(0.2)
    raise AssertionError(f"timed out; last state: {seen[-1]}")


def set_chunks(page, chunks):
    box = page.locator("#chunks input[type=number]")
    box.fill(str(chunks))
    box.press("Enter")


def test_generate_static_and_compare_in_the_browser(page, tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "MAX_BUFFER_SECONDS", 0.0)  # no buffering: the video grows chunk by chunk
    page.fill("#prompt textarea", "a fast pan to the left across desert dunes with cacti")
    set_chunks(page, 4)
    page.click("#generate")
    seen = watch(page, lambda s: "done" in s["status"])
    page.screenshot(path=str(tmp_path / "generate-adaptive.png"), full_page=True)
    playable = [s for s in seen if s["video"] and s["video"]["ready"] >= 2 and s["video"]["width"] == 64]
    assert playable, "the video never showed a frame"
    first_shown = seen.index(playable[0])
    assert "done" not in seen[first_shown]["status"]  # frames were visible before generation ended
    durations = sorted({s["video"]["duration"] for s in playable})
    assert len(durations) >= 3 and durations[-1] == pytest.approx(4 * SHIPPED_CHUNK_FRAMES / 16, abs=0.1)  # grew chunk by chunk, 16 fps
    assert len({s["state"] for s in seen if s["state"]}) >= 3  # the state picture changed between chunks

    page.locator("#anchor").get_by_text("static anchor", exact=True).click()
    set_chunks(page, 3)
    page.click("#generate")
    watch(page, lambda s: " / 3 " in s["status"])  # the new run shows (chunks may pass faster than a poll)
    watch(page, lambda s: "chunk 3 / 3" in s["status"] and "done" in s["status"])
    page.screenshot(path=str(tmp_path / "generate-static.png"), full_page=True)

    page.get_by_role("tab", name="compare").click()
    page.click("#compare")
    watch(page, lambda s: "done" in s["compare"])
    final = page.evaluate(WATCH)
    assert final["adaptive"]["duration"] == pytest.approx(3 * SHIPPED_CHUNK_FRAMES / 16, abs=0.1)
    assert final["static"]["duration"] == pytest.approx(3 * SHIPPED_CHUNK_FRAMES / 16, abs=0.1)
    page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
    assert all((tmp_path / name).stat().st_size > 10_000 for name in ("generate-adaptive.png", "compare.png"))


def test_switch_save_and_continue_in_the_browser(page, tmp_path):
    page.fill("#prompt textarea", "a slow pan to the right across snowy hills with pine trees")
    page.locator("#endless").get_by_role("checkbox").check()
    page.click("#generate")
    watch(page, lambda s: re.match(r"chunk ([2-9]|\d\d+) / endless", s["status"]))  # streaming, past chunk 1
    page.fill("#prompt textarea", "flying over a red desert canyon at dusk")
    page.click("#switch")
    watch(page, lambda s: "prompt: “flying over a red desert canyon at dusk”" in s["status"])
    page.click("#stop")
    page.get_by_text("scene files: save a scene, continue it later").click()  # folded away at first
    page.click("#save-scene")
    link = page.locator("#scene-out a").first
    link.wait_for(timeout=30_000)
    with page.expect_download() as download:
        link.click()
    scene = tmp_path / "scene.safetensors"
    download.value.save_as(scene)
    assert scene.stat().st_size > 1000
    page.screenshot(path=str(tmp_path / "switch-and-save.png"), full_page=True)

    page.locator("#endless").get_by_role("checkbox").uncheck()
    set_chunks(page, 2)
    page.locator("#scene-in input[type=file]").set_input_files(str(scene))
    page.click("#resume")
    seen = watch(page, lambda s: "chunk 2 / 2" in s["status"] and "done" in s["status"])
    assert any(s["video"] and s["video"]["ready"] >= 2 for s in seen)
    page.screenshot(path=str(tmp_path / "continued.png"), full_page=True)


def pixel_blocks(png: bytes, size: int = 64) -> tuple[float, float]:
    """A screenshot of a <video> showing a `size`-pixel frame scaled to fit (letterboxed): the share
    of the frame's pixels drawn as one flat block (their inner screen pixels all equal: nearest
    neighbour; smoothing blends each into its neighbours), and the share of horizontal neighbours
    that differ visibly (a flat frame would pass the first check whatever the rendering)."""
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    height, width = image.shape[:2]
    scale = min(width, height) / size
    x0, y0 = (width - size * scale) / 2, (height - size * scale) / 2
    flat, centres = [], np.zeros((size, size, 3))
    for i in range(size):
        for j in range(size):
            top, left = int(np.ceil(y0 + i * scale)) + 1, int(np.ceil(x0 + j * scale)) + 1
            bottom, right = int(y0 + (i + 1) * scale) - 1, int(x0 + (j + 1) * scale) - 1
            flat.append(np.ptp(image[top:bottom, left:right], axis=(0, 1)).max() <= 1)
            centres[i, j] = image[int(y0 + (i + 0.5) * scale), int(x0 + (j + 0.5) * scale)]
    return float(np.mean(flat)), float(np.mean(np.abs(np.diff(centres, axis=1)).max(-1) > 4))


def test_first_screen_and_crisp_video(page, tmp_path):
    page.set_viewport_size({"width": 1280, "height": 800})
    page.reload()
    page.wait_for_selector("#generate")
    for element in ("#prompt", "#generate", "#video", "#state", "#state-peek"):
        box = page.locator(element).bounding_box()
        assert box["y"] + box["height"] <= 800, f"{element} is below the first screen: {box}"
    for advanced in ("#scene-in", "#save-scene", "#resume"):  # folded away
        assert not page.locator(advanced).is_visible()
    page.screenshot(path=str(tmp_path / "first-screen.png"))

    set_chunks(page, 2)
    page.click("#generate")
    watch(page, lambda s: "done" in s["status"] and s["video"] and s["video"]["ready"] >= 2)
    video = page.locator("#video video")
    box = video.bounding_box()
    assert min(box["width"], box["height"]) >= 4 * 64  # scaled up: how it is scaled shows
    flat, contrast = pixel_blocks(video.screenshot())
    assert contrast > 0.05, "the frame is too flat to tell how it was scaled"
    assert flat > 0.98, f"only {flat:.0%} of the frame's pixels are drawn as flat blocks: the video is smoothed"


def test_the_compare_view_grows_a_filmstrip_and_curves_and_gives_a_verdict(page, tmp_path):
    page.get_by_role("tab", name="compare").click()
    set_chunks(page, 4)
    page.click("#compare")
    seen = watch(page, lambda s: "done" in s["compare"] and s["verdict"])
    page.screenshot(path=str(tmp_path / "compare-view.png"), full_page=True)
    for mode in ("adaptive", "static"):
        widths = sorted({s["filmstrip"][mode] for s in seen} - {0})
        strips = [64 + 66 * k for k in range(4)]  # 4 chunks: a frame (and a 2-px gap) more with every chunk
        assert len(widths) >= 3 and set(widths) <= set(strips) and widths[-1] == strips[-1], widths
        counts = sorted({s["revert"][mode] for s in seen} - {0})
        assert len(counts) >= 3 and counts[-1] == 4, counts  # the curve grew while the run streamed, to 4 points
    verdict = seen[-1]["verdict"]
    assert verdict.startswith("Over chunk 3:") and "revert" in verdict and "pan speed" in verdict
