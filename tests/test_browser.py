"""The demo in a real browser (Debian's Chromium driven by Playwright): generate, watch the video
and the state picture change between chunks, switch to static mode, compare. Screenshots are
saved in the test's output folder."""

import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (`apt-get install chromium`)")

WATCH = """() => {
    const text = (sel) => { const e = document.querySelector(sel); return e ? e.innerText : ""; };
    const video = (sel) => { const v = document.querySelector(sel + " video");
        return v ? {ready: v.readyState, duration: v.duration || 0, width: v.videoWidth} : null; };
    const image = (sel) => { const i = document.querySelector(sel + " img"); return i ? i.src : null; };
    return {status: text("#status"), compare: text("#status-compare"), video: video("#video"),
            state: image("#state"), adaptive: video("#video-adaptive"), static: video("#video-static")};
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


def test_generate_static_and_compare_in_the_browser(page, tmp_path):
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
    assert len(durations) >= 3 and durations[-1] == pytest.approx(3.0, abs=0.1)  # it grew chunk by chunk
    assert len({s["state"] for s in seen if s["state"]}) >= 3  # the state picture changed between chunks

    page.locator("#anchor").get_by_text("static anchor", exact=True).click()
    set_chunks(page, 3)
    page.click("#generate")
    watch(page, lambda s: "chunk 1 / 3" in s["status"])
    watch(page, lambda s: "chunk 3 / 3" in s["status"] and "done" in s["status"])
    page.screenshot(path=str(tmp_path / "generate-static.png"), full_page=True)

    page.get_by_role("tab", name="compare").click()
    page.click("#compare")
    watch(page, lambda s: "done" in s["compare"])
    final = page.evaluate(WATCH)
    assert final["adaptive"]["duration"] == pytest.approx(2.25, abs=0.1)
    assert final["static"]["duration"] == pytest.approx(2.25, abs=0.1)
    page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
    assert all((tmp_path / name).stat().st_size > 10_000 for name in ("generate-adaptive.png", "compare.png"))


def test_switch_save_and_continue_in_the_browser(page, tmp_path):
    page.fill("#prompt textarea", "a slow pan to the right across snowy hills with pine trees")
    page.locator("#endless").get_by_role("checkbox").check()
    page.click("#generate")
    watch(page, lambda s: s["status"].startswith("chunk 2 / endless"))
    page.fill("#prompt textarea", "flying over a red desert canyon at dusk")
    page.click("#switch")
    watch(page, lambda s: "prompt: “flying over a red desert canyon at dusk”" in s["status"])
    page.click("#stop")
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
