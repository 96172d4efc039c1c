"""Click-to-frame latency of the demo in a real browser, and whether its players stall.

    python benchmarks/browser_latency.py [--chunks 8] [--runs 3] [--stall-chunks 40] [--stall-runs 1]
        [--out benchmarks/browser_latency.json]

Starts the app on a free local port (the model loaded first), opens it in Debian's Chromium
(Playwright), and for each run — a fresh page load, as a new visitor — clicks "generate" and times,
from the click: the first video frame the browser can show (the <video> element reaches
HAVE_CURRENT_DATA with a decoded frame), and the last (the video's duration covers every chunk and
the status says done).

Then, per tab (generate: one stream; compare: two), `--stall-runs` runs of `--stall-chunks` chunks
played to the end, each in a fresh page: every time a playing <video> waits for data it does not
have yet (its "waiting" event after it first played, before it ended) is a stall; its length runs
to the next "playing". Also the status line's generated frames per second, against the 16 the
video plays at, and the CPU time per chunk of the app (model and Gradio), of its ffmpeg children and
of Chromium: on two cores everything a chunk costs must stay under 2 / chunks-per-second-of-playback.
"""

import argparse
import json
import re
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROBE = """() => { const v = document.querySelector('#video video');
    return {ready: v ? v.readyState : 0, width: v ? v.videoWidth : 0, duration: v ? (v.duration || 0) : 0,
            done: document.querySelector('#status').innerText.includes('done')}; }"""


def measure(page, chunks: int, seconds_per_chunk: float, timeout: float = 600) -> dict:
    page.click("#generate")
    clicked, first = time.perf_counter(), None
    while time.perf_counter() - clicked < timeout:
        probe = page.evaluate(PROBE)
        now = time.perf_counter() - clicked
        if first is None and probe["ready"] >= 2 and probe["width"] > 0 and not probe["done"]:
            first = now
        if probe["done"] and probe["duration"] >= chunks * seconds_per_chunk - 0.05:
            return {"first_frame_s": first if first is not None else now, "last_frame_s": now}
        time.sleep(0.05)
    raise TimeoutError("generation did not finish")


# Media events do not bubble: listened for in the capture phase, for every <video> the page makes.
LISTEN = """() => { window.playerEvents = []; const start = performance.now();
    for (const type of ["waiting", "playing", "ended"]) document.addEventListener(type, (e) => {
        if (e.target.tagName === "VIDEO") window.playerEvents.push({type, player: e.target.closest("[id]").id,
            at: (performance.now() - start) / 1000, position: e.target.currentTime}); }, true); }"""
ENDED = """(ids) => ids.every(id => { const v = document.querySelector('#' + id + ' video'); return v && v.ended; })"""
TABS = {"generate": ("#generate", "#status", ["video"]),
        "compare": ("#compare", "#status-compare", ["video-adaptive", "video-static"])}


def stalls(events: list, player: str) -> dict:
    """A player's stalls: each "waiting" after its first "playing" (before "ended"), lasting until
    the next "playing" (or the last event, if it never played again)."""
    mine = [e for e in events if e["player"] == player]
    started = next((i for i, e in enumerate(mine) if e["type"] == "playing"), None)
    if started is None:
        return {"played": False, "stalls": 0, "stalled_s": 0.0}
    waits, waiting_since = [], None
    for event in mine[started:]:
        if event["type"] == "waiting" and waiting_since is None:
            waiting_since = event
        elif event["type"] in ("playing", "ended") and waiting_since is not None:
            waits.append({"at_video_s": waiting_since["position"], "seconds": event["at"] - waiting_since["at"]})
            waiting_since = None
    if waiting_since is not None:
        waits.append({"at_video_s": waiting_since["position"], "seconds": mine[-1]["at"] - waiting_since["at"]})
    return {"played": True, "first_played_s": mine[started]["at"], "stalls": len(waits),
            "stalled_s": sum(w["seconds"] for w in waits), "waits": waits}


def cpu_seconds() -> dict:
    """CPU time so far of this process (the app), of its finished children (Gradio's ffmpeg) and of
    the Chromium processes now running."""
    import psutil

    own = psutil.Process().cpu_times()
    chromium = 0.0
    for process in psutil.process_iter(["name"]):
        if "chrom" in (process.info["name"] or ""):
            try:
                times = process.cpu_times()
                chromium += times.user + times.system
            except psutil.Error:  # ended meanwhile
                pass
    return {"app": own.user + own.system, "ffmpeg": own.children_user + own.children_system, "chromium": chromium}


def measure_stalls(page, url: str, tab: str, chunks: int, video_seconds: float, timeout: float = 900) -> dict:
    button, status, players = TABS[tab]
    page.goto(url)
    page.wait_for_selector("#generate")
    if tab == "compare":
        page.get_by_role("tab", name="compare").click()
    box = page.locator("#chunks input[type=number]")
    box.fill(str(chunks))
    box.press("Enter")
    page.evaluate(LISTEN)
    cpu_before = cpu_seconds()
    page.click(button)
    clicked, generated, fps = time.perf_counter(), None, None
    while time.perf_counter() - clicked < timeout:
        text = page.locator(status).inner_text()
        if generated is None and "done" in text:
            generated = time.perf_counter() - clicked
            fps = float(re.search(r"([\d.]+) frames generated per second", text).group(1))
        if generated is not None and (page.evaluate(ENDED, players)
                                      or time.perf_counter() - clicked > generated + video_seconds + 30):
            break
        time.sleep(0.25)
    events = page.evaluate("() => window.playerEvents")
    cpu_after = cpu_seconds()
    return {"tab": tab, "chunks": chunks, "generated_s": generated, "generated_fps": fps,
            "cpu_s_per_chunk": {k: (cpu_after[k] - cpu_before[k]) / chunks for k in cpu_before},
            "video_s": video_seconds, "players": {player: stalls(events, player) for player in players}}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stall-chunks", type=int, default=40)
    parser.add_argument("--stall-runs", type=int, default=1, help="per tab; 0 skips the stall measurement")
    parser.add_argument("--out")
    args = parser.parse_args()

    import app
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    backend = app.BACKENDS.get("adaptive")
    seconds_per_chunk = 3 * backend.frames_per_latent / backend.fps
    runs = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        for _ in range(args.runs):
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#generate")
            box = page.locator("#chunks input[type=number]")
            box.fill(str(args.chunks))
            box.press("Enter")
            runs.append(measure(page, args.chunks, seconds_per_chunk))
            print(json.dumps(runs[-1]), file=sys.stderr)
        stall_runs = []
        for tab in TABS:
            for _ in range(args.stall_runs):
                stall_runs.append(measure_stalls(page, f"http://127.0.0.1:{port}/", tab, args.stall_chunks,
                                                 args.stall_chunks * seconds_per_chunk))
                print(json.dumps(stall_runs[-1]), file=sys.stderr)
        browser.close()
    app.demo.close()
    results = {"chunks": args.chunks, "video_seconds": args.chunks * seconds_per_chunk, "runs": runs,
               "median_first_frame_s": statistics.median(r["first_frame_s"] for r in runs),
               "median_last_frame_s": statistics.median(r["last_frame_s"] for r in runs),
               "backend_notice": backend.notice, "stall_runs": stall_runs}
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
