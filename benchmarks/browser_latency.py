"""Click-to-frame latency of the demo in a real browser.

    python benchmarks/browser_latency.py [--chunks 8] [--runs 3] [--out benchmarks/browser_latency.json]

Starts the app on a free local port (the model loaded first), opens it in Debian's Chromium
(Playwright), and for each run — a fresh page load, as a new visitor — clicks "generate" and times,
from the click: the first video frame the browser can show (the <video> element reaches
HAVE_CURRENT_DATA with a decoded frame), and the last (the video's duration covers every chunk and
the status says done).
"""

import argparse
import json
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()

    import app
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
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
        browser.close()
    app.demo.close()
    results = {"chunks": args.chunks, "video_seconds": args.chunks * seconds_per_chunk, "runs": runs,
               "median_first_frame_s": statistics.median(r["first_frame_s"] for r in runs),
               "median_last_frame_s": statistics.median(r["last_frame_s"] for r in runs),
               "backend_notice": backend.notice}
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
