"""The README's picture: the compare view after a run of the demo's first example, in Chromium.

    python docs/screenshot.py [--out docs/demo.png] [--chunks 40]

Starts the app on a free local port, opens it at 1280 px wide, fills the compare tab with the first
example's prompt and seed (the evaluation's run where the two anchors differ most), runs it to the
end and saves the whole page.
"""

import argparse
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/demo.png")
    parser.add_argument("--chunks", type=int, default=40)
    args = parser.parse_args()

    import app
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    prompt, seed = app.EXAMPLES[0][:2]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("#generate")
        page.locator("#prompt textarea").fill(prompt)
        for field, value in (("#seed", seed), ("#chunks", args.chunks)):
            box = page.locator(f"{field} input[type=number]")
            box.fill(str(value))
            box.press("Enter")
        page.get_by_role("tab", name="compare").click()
        page.click("#compare")
        started = time.perf_counter()
        while "done" not in page.locator("#status-compare").inner_text():
            if time.perf_counter() - started > 900:
                raise TimeoutError("the comparison did not finish")
            time.sleep(0.5)
        time.sleep(2)  # the last plots and pictures
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    print(f"wrote {args.out}: {prompt!r}, seed {seed}, {args.chunks} chunks")


if __name__ == "__main__":
    main()
