"""The demo as the public meets it: load, cross-talk, cancellations, fair sharing, memory,
temporary disk and bad inputs, measured from outside through HTTP (gradio_client and raw calls).

    python benchmarks/reliability.py [--out benchmarks/reliability.json]   # the figures of issue 15

Starts `python app.py` on a free localhost port with temporary folders of its own (Gradio's cache
and TMPDIR, so that their size is the demo's alone; the clients download into another folder) and
a short session idle time (so that "once the sessions end" is reached within the run), then:

  load          `clients` visitors at once, each `runs` generations (modes and seeds mixed),
                plus `compares` comparisons: errors, and cross-talk — every video of the
                reference seed must equal the one made alone, frame for frame
  cancel        `cancels` 40-chunk runs started, each cancelled after its first update: the
                server's CPU use over the seconds after
  fair share    two endless streams run; a new visitor asks for one chunk: seconds to its first
                chunk, and whether the endless streams kept running
  disk          `disk_runs` runs (of which `uploads` continue an uploaded scene) and `saves`
                saves from `sessions` visitors: the temporary folders' largest size meanwhile
                (sampled every second; a visitor who is done idles out after `idle` seconds), after
                them, once the sessions have ended, and once Gradio's cache age has passed
  bad inputs    malformed arguments, tampered scene files, path tricks: each answered with
                its specific message (no null error, no traceback, no server path)?
  memory        the server's resident memory after each phase, against the budget: its
                memory once warm + the kept-scene budget + `STREAM_MIB` per running stream
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil
import torch
from gradio_client import Client, handle_file
from safetensors import safe_open
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adastate.demo import COMPUTE_SLOTS, MAX_STREAMS  # noqa: E402
from adastate.sampling import timesteps  # noqa: E402
from adastate.scene import METADATA_KEY  # noqa: E402
from adastate.video import read_video  # noqa: E402

PROMPT = "a slow pan to the right across snowy hills with pine trees"
# The memory budget's allowance per running stream (KV cache, decoder, MP4 encoder, the web
# server's copies of its segments); the load phase reports the peak it reached with every place taken.
STREAM_MIB = 64


class Server:
    """`python app.py` in its own temporary folders."""

    def __init__(self, work: Path, env: dict):
        self.cache, self.tmp = work / "gradio", work / "tmp"
        self.cache.mkdir(parents=True)
        self.tmp.mkdir()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/"
        self.log = open(work / "server.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, **env, "GRADIO_TEMP_DIR": str(self.cache), "TMPDIR": str(self.tmp),
                 "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"})
        self.ps = psutil.Process(self.process.pid)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "config", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
        raise RuntimeError(f"the app did not start; see {work / 'server.log'}")

    def rss_mib(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system + sum(t.user + t.system for t in (c.cpu_times() for c in self.ps.children()))

    def disk(self) -> dict:
        """Files and their bytes; `allocated_mib` also counts folders and whole blocks (what `du` says)."""
        paths = [p for folder in (self.cache, self.tmp) for p in folder.rglob("*")]
        files = [p for p in paths if p.is_file()]
        return {"files": len(files), "mib": round(sum(p.stat().st_size for p in files) / 2**20, 2),
                "folders": len(paths) - len(files),
                "allocated_mib": round(sum(p.lstat().st_blocks * 512 for p in paths) / 2**20, 2)}

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


class Peak:
    """Context: the highest value `measure()` takes, sampled every `seconds` while inside."""

    def __init__(self, measure, seconds: float = 0.5):
        self.measure, self.seconds, self.value = measure, seconds, measure()
        self.done = threading.Event()
        self.sampler = threading.Thread(target=self.sample, daemon=True)

    def sample(self):
        while not self.done.wait(self.seconds):
            self.value = max(self.value, self.measure())

    def __enter__(self):
        self.sampler.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.sampler.join()
        self.value = max(self.value, self.measure())


class Visitor:
    def __init__(self, server: Server, downloads: Path):
        self.client = Client(server.url, verbose=False, download_files=str(downloads))

    def generate(self, seed, chunks, anchor="adaptive", endless=False):
        return self.client.submit(PROMPT, seed, chunks, anchor, 4, 1, endless, api_name="/generate")

    def close(self):
        self.client.close()


def frames(outputs) -> np.ndarray:
    return read_video(outputs[-1])[0]


def load(server, downloads, clients, runs, compares, chunks):
    """`clients` visitors at once; every video of seed 0 must equal the one made alone."""
    alone = Visitor(server, downloads)
    reference = {mode: frames(alone.generate(0, chunks, mode).result()) for mode in ("adaptive", "static")}
    alone.close()
    results = []

    def visit(number):
        visitor, done = Visitor(server, downloads), []
        try:
            for run in range(runs):
                mode, seed = ("adaptive", "static")[(number + run) % 2], (number + run) % 3  # seed 0 recurs
                try:
                    video = frames(visitor.generate(seed, chunks, mode).result())
                    done.append({"ok": True, "seed": seed, "mode": mode,
                                 "same_as_alone": bool(np.array_equal(video, reference[mode])) if seed == 0 else None})
                except Exception as e:
                    done.append({"ok": False, "error": str(e)[:200]})
            if number < compares:
                try:
                    outputs = visitor.client.predict(PROMPT, 0, chunks, 4, 1, api_name="/compare")
                    same = all(np.array_equal(read_video(outputs[i])[0], reference[mode])
                               for i, mode in ((9, "adaptive"), (10, "static")))  # the finished MP4s
                    done.append({"ok": True, "compare": True, "same_as_alone": bool(same)})
                except Exception as e:
                    done.append({"ok": False, "compare": True, "error": str(e)[:200]})
        finally:
            visitor.close()
        return done

    started = time.monotonic()
    with Peak(server.rss_mib) as peak, ThreadPoolExecutor(clients) as pool:
        for done in pool.map(visit, range(clients)):
            results.extend(done)
    checked = [r for r in results if r.get("same_as_alone") is not None]
    return {"clients": clients, "runs_per_client": runs, "compares": compares, "chunks": chunks,
            "requests": len(results), "ok": sum(r["ok"] for r in results),
            "errors": [r["error"] for r in results if not r["ok"]],
            "cross_talk_checked": len(checked), "cross_talk": sum(not r["same_as_alone"] for r in checked),
            "seconds": round(time.monotonic() - started, 1), "peak_rss_mib": round(peak.value, 1)}


def cancellations(server, downloads, count):
    """Start `count` 40-chunk runs, cancel each after its first update, watch the server's CPU."""
    visitors = [Visitor(server, downloads) for _ in range(count)]
    jobs = [v.generate(i, 40, "static") for i, v in enumerate(visitors)]
    for job in jobs:
        next(iter(job))
    for job in jobs:
        job.cancel()
    cancelled = time.monotonic()
    time.sleep(1.0)  # a chunk in progress finishes
    before = server.cpu_seconds()
    time.sleep(3.0)
    busy = (server.cpu_seconds() - before) / 3.0
    for visitor in visitors:
        visitor.close()
    return {"cancelled_runs": count, "server_cpu_share_1_to_4_s_after": round(busy, 3),
            "seconds_measured_from_cancel": round(time.monotonic() - cancelled, 1)}


def fair_share(server, downloads, warm_chunks=3):
    """Two endless streams run; a new visitor asks for one chunk."""
    endless = [Visitor(server, downloads) for _ in range(2)]
    jobs = [v.generate(i, 1, "adaptive", endless=True) for i, v in enumerate(endless)]
    streams = [iter(job) for job in jobs]
    for stream in streams:
        for _ in range(warm_chunks):
            next(stream)
    newcomer = Visitor(server, downloads)
    asked = time.monotonic()
    first = None
    for update in newcomer.generate(7, 1, "static"):
        if update[4].startswith("chunk 1 /"):
            first = time.monotonic() - asked
            break
    statuses = [next(stream)[4] for stream in streams]
    for job in jobs:
        job.cancel()
    for visitor in endless + [newcomer]:
        visitor.close()
    return {"first_chunk_seconds_while_two_endless_run": round(first, 2) if first is not None else None,
            "endless_statuses_after": statuses,
            "endless_kept_running": all("endless" in s and "ended" not in s for s in statuses)}


def disk(server, downloads, sessions, runs, saves, uploads, idle_seconds):
    """`runs` runs (`uploads` of them continue an uploaded scene) and `saves` saves."""
    visitors = [Visitor(server, downloads) for _ in range(sessions)]
    counts = {"runs": 0, "saves": 0, "uploads": 0}
    lock = threading.Lock()

    def count(what):
        with lock:
            counts[what] += 1

    def visit(number):
        """Task t (of runs - uploads generations) goes to visitor t % sessions; the first `saves`
        save their scene, the first `uploads` continue it from an upload (a run too). Seeds differ,
        so every uploaded scene is a file of its own (Gradio keeps one copy of equal files)."""
        visitor = visitors[number]
        for task in range(number, runs - uploads, sessions):
            visitor.generate(task, 1, ("adaptive", "static")[task % 2]).result()
            count("runs")
            if task < saves:
                scene = visitor.client.predict(api_name="/save_scene")
                count("saves")
                if task < uploads:
                    visitor.client.predict(handle_file(scene), "", 0, 1, False, api_name="/resume")
                    count("uploads")
                    count("runs")

    with Peak(lambda: server.disk()["mib"], seconds=1.0) as peak, ThreadPoolExecutor(4) as pool:
        list(pool.map(visit, range(sessions)))
    after = server.disk()
    for visitor in visitors:
        visitor.close()
    ended = time.monotonic()
    visits = server.cache / "adastate"
    while any(visits.iterdir()) and time.monotonic() - ended < 60:
        time.sleep(0.5)
    gone = None if any(visits.iterdir()) else round(time.monotonic() - ended, 1)
    sessions_ended = server.disk()
    time.sleep(max(0.0, 2 * idle_seconds + 5 - (time.monotonic() - ended)))  # Gradio sweeps every idle_seconds
    return {"sessions": sessions, **counts, "peak_mib": peak.value, "after": after,
            "seconds_until_session_folders_gone": gone,
            "once_sessions_ended": sessions_ended, "after_cache_age": server.disk()}


def edited_scene(scene: Path, folder: Path, name: str, meta=None, tensors=None, raw=None) -> Path:
    """A copy of `scene` named `name` with its header changed by `meta` (or replaced by `raw`) and
    its tensors by `tensors`."""
    with safe_open(str(scene), "pt") as f:
        header = json.loads(f.metadata()[METADATA_KEY])
    if meta is not None:
        meta(header)
    values = load_file(scene)
    if tensors is not None:
        tensors(values)
    out = folder / name
    save_file(values, out, metadata={METADATA_KEY: raw if raw is not None else json.dumps(header)})
    return out


def bad_inputs(server, downloads, work):
    """(what, expected phrase) → the message each gets. Specific: the phrase is in it, and it is no
    null error, no traceback, no server path."""
    tried = []

    def judge(what, message, *expected):
        message = str(message)
        specific = (all(phrase in message for phrase in expected) and "Traceback" not in message
                    and str(server.cache) not in message and str(server.tmp) not in message)
        tried.append({"input": what, "specific": specific, "message": message[:300]})

    def raw(api_name, data):
        try:
            event = httpx.post(f"{server.url}gradio_api/call/{api_name}", json={"data": data}, timeout=30)
            if event.status_code != 200:
                return f"HTTP {event.status_code}: {event.text}"
            lines = httpx.get(f"{server.url}gradio_api/call/{api_name}/{event.json()['event_id']}",
                              timeout=120).text.strip().splitlines()
            return lines[-1] if lines else "(nothing)"
        except httpx.HTTPError as e:
            return f"{type(e).__name__}: {e}"

    good = [PROMPT, 0, 2, "adaptive", 4, 1, False]
    for what, index, value, expected in [
        ("chunks 'abc'", 2, "abc", "chunks must be a number, got 'abc'"),
        ("chunks 'NaN'", 2, "NaN", "chunks must be a whole number from 1 to 120, got 'NaN'"),
        ("chunks 1e9", 2, 1e9, "chunks must be a whole number from 1 to 120"),
        ("chunks true", 2, True, "chunks must be a number, got True"),
        ("chunks [2]", 2, [2], "chunks must be a number, got [2]"),
        ("seed -1", 1, -1, "seed must be a whole number from 0"),
        ("seed null", 1, None, "seed must be a number, got None"),
        ("anchor 'upside-down'", 3, "upside-down", "unknown anchor mode 'upside-down'"),
        ("steps 50", 4, 50, "denoising steps must be a whole number from 1 to 8, got 50"),
        ("window 16", 5, 16, "window must be a whole number from 1 to 4, got 16"),
        ("endless 'yes'", 6, "yes", "endless must be true or false, got 'yes'"),
        ("endless 1", 6, 1, "endless must be true or false, got 1"),
        ("empty prompt", 0, "  ", "the prompt is empty"),
        ("5000-character prompt", 0, "x" * 5000, "the prompt is 5000 characters long; the limit is 2000"),
        ("prompt 123", 0, 123, "the prompt must be text, got 123"),
    ]:
        judge(f"/generate {what}", raw("generate", good[:index] + [value] + good[index + 1:]), expected)
    judge("/generate with 3 values", raw("generate", good[:3]), "didn't receive enough input values (needed: 7, got: 3)")
    judge("/compare chunks 'abc'", raw("compare", [PROMPT, 0, "abc", 4, 1]), "chunks must be a number, got 'abc'")
    judge("/compare with 2 values", raw("compare", [PROMPT, 0]), "didn't receive enough input values (needed: 5, got: 2)")
    file_meta = {"meta": {"_type": "gradio.FileData"}}
    for what, value, expected in [
        ("a string", "scene.safetensors", "validation error for FileData"),
        ("path 5", {"path": 5, **file_meta}, "validation error for FileData"),
        ("null", None, "upload a scene file (.safetensors)"),
        ("/etc/passwd", {"path": "/etc/passwd", **file_meta}, "not uploaded by a user"),
        ("../../etc/passwd", {"path": "../../../../etc/passwd", **file_meta}, "not uploaded by a user"),
        ("cache/../../etc/passwd", {"path": f"{server.cache}/../../../etc/passwd", **file_meta}, "not uploaded by a user"),
    ]:
        judge(f"/resume file {what}", raw("resume", [value, "", 0, 1, False]), expected)
    judge("/switch_prompt with no stream", raw("switch_prompt", ["dunes", True]), "nothing is streaming in this session")
    judge("/switch_prompt prompt 5", raw("switch_prompt", [5, True]), "the prompt must be text, got 5")
    judge("/switch_prompt re-cache 'no'", raw("switch_prompt", ["x", "no"]), "re-cache must be true or false, got 'no'")
    judge("/save_scene with no stream", raw("save_scene", []), "nothing to save in this session: generate first")
    for what, path in [("/etc/passwd", "/etc/passwd"), ("../app.py", "../app.py"),
                       ("cache/../../../etc/passwd", f"{server.cache}/../../../etc/passwd")]:
        response = httpx.get(f"{server.url}gradio_api/file={path}", timeout=10)
        refused = response.status_code in (403, 404) and "root:" not in response.text
        tried.append({"input": f"file route {what}", "specific": refused, "message": f"HTTP {response.status_code}"})
    tag = uuid.uuid4().hex[:6]  # in the name of every file sent from here on: none may stay on the server
    big = httpx.post(f"{server.url}gradio_api/upload",
                     files={"files": (f"big-{tag}.safetensors", b"\0" * (256 * 2**20))}, timeout=120)
    judge("256 MB upload", f"HTTP {big.status_code}: {big.text}", "HTTP 413", "File size exceeded maximum allowed size")

    # tampered scene files, uploaded as a visitor would
    visitor = Visitor(server, downloads)
    visitor.generate(0, 2, "adaptive").result()
    scene = Path(visitor.client.predict(api_name="/save_scene"))
    folder = work / "scenes"
    folder.mkdir()

    def resumed(path: Path) -> str:
        try:
            visitor.client.predict(handle_file(str(path)), "", 0, 1, False, api_name="/resume")
            return "(accepted)"
        except Exception as e:
            return str(e)

    def setting(key, value):
        return lambda header: header["settings"].__setitem__(key, value)

    def top(key, value):
        return lambda header: header.__setitem__(key, value)

    cases = [
        ("50 denoising steps", dict(meta=setting("denoising_steps", list(timesteps(50)))),
         "asks for 50 denoising steps per chunk; at most 8 here"),
        ("window 16", dict(meta=setting("window_chunks", 16)), "keeps a window of 16 chunks; at most 4 here"),
        ("chunk_frames 16", dict(meta=setting("chunk_frames", 16)), "the scene's chunks are 16 latent frames"),
        ("chunk index 100000", dict(meta=top("index", 100000)), "the chunk index must be a whole number from 1 to 99999"),
        ("5000-character prompt", dict(meta=top("prompt", "x" * 5000)), "the prompt is 5000 characters long"),
        ("header a JSON list", dict(raw="[1, 2]"), "the scene header must be a JSON object, got list"),
        ("header not JSON", dict(raw="{nope"), "its scene description is not JSON"),
        ("NaN anchor", dict(tensors=lambda t: t.__setitem__("anchor_latent", torch.full_like(t["anchor_latent"],
                                                                                              float("nan")))),
         "tensor 'anchor_latent' holds values that are not finite"),
        ("2x2 anchor", dict(tensors=lambda t: t.__setitem__("anchor_latent", torch.zeros(2, 2))),
         "tensor 'anchor_latent' has shape [2, 2]"),
        ("int64 keys", dict(tensors=lambda t: t.__setitem__("cache.anchor.0.key", t["cache.anchor.0.key"].long())),
         "is torch.int64, this model writes torch.float32"),
        ("a tensor missing", dict(tensors=lambda t: t.pop("cache.window.5.0.value")),
         "tensor 'cache.window.5.0.value' is missing"),
    ]
    for what, change, expected in cases:
        name = f"{what.replace(' ', '-')}-{tag}.safetensors"
        judge(f"scene file: {what}", resumed(edited_scene(scene, folder, name, **change)), f"{name}: ", expected)
    pickled = folder / f"pickle-{tag}.safetensors"
    pickled.write_bytes(b"\x80\x04\x95pickle")
    truncated = folder / f"truncated-{tag}.safetensors"
    truncated.write_bytes(scene.read_bytes()[:-1000])
    judge("scene file: a pickle", resumed(pickled), f"{pickled.name} is not a safetensors file (it is a Python pickle")
    judge("scene file: truncated", resumed(truncated), f"{truncated.name} is a corrupt safetensors file")
    visitor.close()
    left = [p.name for p in server.cache.rglob(f"*{tag}*")]
    return {"tried": len(tried), "specific": sum(t["specific"] for t in tried), "cases": tried,
            "rejected_uploads_left_on_disk": left}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3, help="generations per client in the load phase")
    parser.add_argument("--compares", type=int, default=2)
    parser.add_argument("--chunks", type=int, default=2, help="chunks per run in the load phase")
    parser.add_argument("--cancels", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=10, help="visitors in the disk phase")
    parser.add_argument("--disk-runs", type=int, default=100)
    parser.add_argument("--saves", type=int, default=50)
    parser.add_argument("--uploads", type=int, default=30)
    parser.add_argument("--idle", type=int, default=20, help="the server's session idle time and cache age, seconds")
    parser.add_argument("--session-memory-mb", type=float, default=16,
                        help="the server's budget for kept scenes (small, so that the budget is reached)")
    parser.add_argument("--out", default="benchmarks/reliability.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="adastate-reliability-"))
    downloads = work / "client"
    server = Server(work, {"ADASTATE_SESSION_IDLE": str(args.idle),
                           "ADASTATE_SESSION_MEMORY_MB": str(args.session_memory_mb)})
    result = {"command": "python " + " ".join(sys.argv), "settings": vars(args),
              "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}}
    try:
        warm = Visitor(server, downloads)
        warm.generate(0, 1, "adaptive").result()
        warm.generate(0, 1, "static").result()
        warm.close()
        rss = {"warm": round(server.rss_mib(), 1)}
        budget = rss["warm"] + args.session_memory_mb + STREAM_MIB * MAX_STREAMS
        result["load"] = load(server, downloads, args.clients, args.runs, args.compares, args.chunks)
        rss["after_load"] = round(server.rss_mib(), 1)
        result["cancel"] = cancellations(server, downloads, args.cancels)
        rss["after_cancel"] = round(server.rss_mib(), 1)
        result["fair_share"] = fair_share(server, downloads)
        result["disk"] = disk(server, downloads, args.sessions, args.disk_runs, args.saves, args.uploads, args.idle)
        rss["after_disk_and_sessions_ended"] = round(server.rss_mib(), 1)
        result["bad_inputs"] = bad_inputs(server, downloads, work)
        rss["end"] = round(server.rss_mib(), 1)
        result["memory"] = {"rss_mib": rss, "budget_mib": round(budget, 1),
                            "budget": f"warm RSS + kept-scene budget ({args.session_memory_mb:g} MiB) + "
                                      f"{STREAM_MIB} MiB x {MAX_STREAMS} streams",
                            "max_streams": MAX_STREAMS, "compute_slots": COMPUTE_SLOTS,
                            "within_budget": max(max(rss.values()), result["load"]["peak_rss_mib"]) <= budget}
        result["server_alive"] = server.process.poll() is None
    finally:
        server.stop()
    load_, disk_, bad = result["load"], result["disk"], result["bad_inputs"]
    result["done_when"] = {
        "0 errors and 0 cross-talk under 8 concurrent clients": load_["clients"] >= 8 and not load_["errors"]
        and load_["cross_talk"] == 0 and load_["cross_talk_checked"] > 0,
        "temp disk <= 100 MB during and after 100 runs, 50 saves, 30 uploads": disk_["runs"] >= 100
        and disk_["saves"] >= 50 and disk_["uploads"] >= 30 and disk_["peak_mib"] <= 100,
        "temp disk < 10 MB once the sessions end": disk_["once_sessions_ended"]["mib"] < 10,
        "RSS within the documented budget": result["memory"]["within_budget"],
        "every bad input answered with a specific message": bad["specific"] == bad["tried"]
        and not bad["rejected_uploads_left_on_disk"],
        "first chunk within 15 s while two endless streams run":
            (result["fair_share"]["first_chunk_seconds_while_two_endless_run"] or 1e9) <= 15,
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    summary = {k: v for k, v in result.items() if k not in ("bad_inputs",)}
    summary["bad_inputs"] = {k: v for k, v in bad.items() if k != "cases"}
    summary["bad_inputs"]["not_specific"] = [c for c in bad["cases"] if not c["specific"]]
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
