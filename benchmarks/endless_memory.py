"""Resident memory of the demo's endless mode over a long run.

    python benchmarks/endless_memory.py [--chunks 400] [--out benchmarks/endless_memory.json]

Drives the generator behind the app's /generate with endless=True (what the UI runs until the
visitor presses stop) on the embedded model, and records the process's resident memory (RSS)
every 10 chunks. What the app's web server keeps besides (Gradio holds each streamed segment of a
response, a few KB per chunk at 64 px) is not part of this process's generator and not measured here.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adastate.bench import rss_mib  # noqa: E402
from adastate.demo import Backends, generate_updates  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=400)
    parser.add_argument("--out", default="benchmarks/endless_memory.json")
    args = parser.parse_args()

    updates = generate_updates(Backends("tiny"), "a slow pan to the right across snowy hills", 0, 1, "adaptive",
                               endless=True)
    samples = []
    for chunk, (update, status) in enumerate(updates, start=1):
        if chunk % 10 == 0:
            samples.append({"chunk": chunk, "rss_mib": rss_mib(), "records": len(update.records)})
        if chunk == args.chunks:
            break
    updates.close()  # what the stop button does
    growth = samples[-1]["rss_mib"] - samples[1]["rss_mib"]
    result = {"command": "python " + " ".join(sys.argv), "samples": samples,
              "rss_chunk_20_mib": samples[1]["rss_mib"], "rss_last_mib": samples[-1]["rss_mib"],
              "growth_mib": growth, "growth_kib_per_chunk": 1024 * growth / (samples[-1]["chunk"] - 20)}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
