"""What a prompt switch mid-stream does, with and without re-caching the window (LongLive).

    python benchmarks/prompt_switch.py [--pairs 4] [--seeds 0 1] [--chunks 12] [--switch-at 4]
                                       [--out benchmarks/prompt_switch.json]

For pairs of held-out worlds of different styles (prompt A → prompt B), in both anchor modes of the
embedded model, each seed runs: A alone, B alone, and A switched to B at chunk `switch_at`, once
without and once with re-caching. Per switched run:

- chunks until B is visible: the first chunk from the switch on whose colours (hue/saturation
  histogram) are closer to the model's own rendering of B (mean histogram of the B-alone run) than
  to its rendering of A; 0 means the very first chunk after the switch. Runs where B never shows
  count as `chunks - switch_at` (and are counted separately).
- continuity: optical-flow magnitude across the switch (last frame before → first frame after)
  over the mean flow of the frame pairs in the chunks either side. ~1: the scene moves on; ≫1: a cut.
  The same number at the same chunk boundary of the A-alone run (no switch) is the reference: the
  embedded model's chunk boundaries are not seamless by themselves.
- switch latency: seconds spent switching (text encoding, re-cache) over a chunk's seconds.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adastate.backends import load_backend  # noqa: E402
from adastate.data.worlds import caption, sample_world_spec  # noqa: E402
from adastate.evaluate import HELD_OUT_WORLDS  # noqa: E402
from adastate.metrics import color_histogram, histogram_distance, motion_magnitude  # noqa: E402
from adastate.stream import ANCHOR_MODES, ChunkStream, StreamSettings  # noqa: E402


def prompt_pairs(count: int) -> list[tuple[str, str]]:
    """Captions of held-out worlds, paired so that the two worlds of a pair differ in style."""
    specs = [sample_world_spec(HELD_OUT_WORLDS + 100 + i) for i in range(8 * count)]
    pairs, used = [], set()
    for a in specs:
        b = next((s for s in specs if s.style != a.style and s.seed not in used and s.seed != a.seed), None)
        if a.seed in used or b is None:
            continue
        used |= {a.seed, b.seed}
        pairs.append((caption(a, seed=1), caption(b, seed=1)))
        if len(pairs) == count:
            break
    return pairs


def run(backend, prompt, settings, schedule=None, recache=False):
    stream = ChunkStream(backend, prompt, settings, prompt_schedule=schedule, recache_on_switch=recache)
    return list(stream)


def continuity(chunks, boundary: int) -> float:
    before, first = chunks[boundary - 1].frames, chunks[boundary].frames
    across = motion_magnitude(np.stack([before[-1], first[0]]))
    return across / max(statistics.mean([motion_magnitude(before), motion_magnitude(first)]), 1e-6)


def measure_switch(chunks, a_colours, b_colours, switch_at: int) -> dict:
    after = chunks[switch_at:]
    closer_to_b = [histogram_distance(color_histogram(c.frames), b_colours)
                   < histogram_distance(color_histogram(c.frames), a_colours) for c in after]
    visible = closer_to_b.index(True) if True in closer_to_b else None
    timings = chunks[switch_at].seconds
    plain = statistics.mean(c.seconds["total"] for c in chunks if c.index != switch_at)
    return {"chunks_until_visible": len(after) if visible is None else visible, "visible": visible is not None,
            "continuity": continuity(chunks, switch_at), "switch_seconds": timings["switch"],
            "switch_over_chunk": timings["switch"] / plain}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--chunks", type=int, default=12)
    parser.add_argument("--switch-at", type=int, default=4)
    parser.add_argument("--out", default="benchmarks/prompt_switch.json")
    args = parser.parse_args()

    results = {"command": "python " + " ".join(sys.argv), "pairs": prompt_pairs(args.pairs), "modes": {}}
    for mode in ANCHOR_MODES:
        backend = load_backend("tiny", None, "cpu", mode)
        rows, reference = {"off": [], "on": []}, []
        for a, b in results["pairs"]:
            for seed in args.seeds:
                settings = StreamSettings(anchor=mode, chunks=args.chunks, seed=seed)
                a_alone = run(backend, a, settings)
                reference.append(continuity(a_alone, args.switch_at))
                a_colours = np.mean([color_histogram(c.frames) for c in a_alone], axis=0)
                b_colours = np.mean([color_histogram(c.frames) for c in run(backend, b, settings)], axis=0)
                for recache in (False, True):
                    switched = run(backend, a, settings, {args.switch_at: b}, recache)
                    rows["on" if recache else "off"].append(
                        measure_switch(switched, a_colours, b_colours, args.switch_at))
        results["modes"][mode] = {
            "notice": backend.notice, "continuity_without_switch": statistics.mean(reference),
            "recache": {key: {"runs": len(r),
                              "chunks_until_visible": statistics.mean(x["chunks_until_visible"] for x in r),
                              "visible_share": statistics.mean(x["visible"] for x in r),
                              "continuity": statistics.mean(x["continuity"] for x in r),
                              "switch_over_chunk": statistics.mean(x["switch_over_chunk"] for x in r),
                              "switch_seconds": statistics.mean(x["switch_seconds"] for x in r)}
                        for key, r in rows.items()},
            "runs": rows}
    Path(args.out).write_text(json.dumps(results, indent=2))
    for mode, data in results["modes"].items():
        print(mode, "continuity at the same boundary without a switch:", round(data["continuity_without_switch"], 3))
        for key, summary in data["recache"].items():
            print(mode, f"re-cache {key}:", {k: round(v, 3) for k, v in summary.items()})


if __name__ == "__main__":
    main()
