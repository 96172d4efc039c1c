"""AdaState demo: widgets and wiring only; the logic lives in adastate.demo (tested there)."""

import logging
import os
from contextlib import contextmanager
from pathlib import Path

# The model's OpenMP threads sleep between operations instead of spinning: on two cores the spinning
# took CPU that Gradio and the visitor's browser need (benchmarks/RESULTS.md, "Does the player
# stall?"). Read when torch starts, so before it is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# And the model leaves one core to the server and a local visitor's browser: on two cores one thread
# streamed faster than two with the browser open (9.3 vs 6.3 frames a second) for 30 % less CPU a
# chunk (benchmarks/RESULTS.md, "Where a chunk's CPU goes").
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, CORES - 1)))

import gradio as gr
import spaces

from adastate.backends.wan import gpu_duration
from adastate.demo import (ENDLESS_CHUNKS, MAX_DEMO_CHUNKS, MAX_STEPS, MAX_WINDOW, SESSION_IDLE_SECONDS, SWEEP_SECONDS,
                           Backends, Scheduler, Visitors, compare_updates, curves_of, generate_updates, plots_of,
                           reserved_chunks, resume_updates, showcase_examples, summary_of, upload_limit_bytes, verdict_of)
from adastate.stream import RECACHE_ON_SWITCH
from adastate.viz import SUMMARY_HEADERS

BACKENDS = Backends()
EXAMPLES = showcase_examples(Path(__file__).parent / "docs" / "eval" / "examples.json", fallback=[
    ["a slow pan to the right across snowy hills with pine trees", 0, 16, "adaptive"],
    ["the camera moves left at a rapid pace over desert dunes, passing cacti", 1, 16, "adaptive"],
    ["flying right over alien valley dotted with glowing crystals, steady motion", 2, 16, "static"],
])
EXPLANATION = """
**AdaState** streams a video chunk by chunk (a chunk: 3 latent frames, a fraction of a second).
Beside the video you see what the model keeps as its scene anchor. In **adaptive** mode that is a
hidden *state* the model denoises together with every chunk and writes back into its memory; it
evolves with the scene and is never shown as video. In **static** mode (the Self-Forcing baseline) the anchor is the first
frame, frozen for ever. The *colours* are a fixed projection of the anchor latent (same colours,
same state); the *peek* decodes it as if it were video. Plots: motion in the frames, the share of
attention the new chunk gives the anchor, and how much the anchor changed.

While it streams you can edit the prompt and **switch**: the next chunk follows the new prompt
while the state and the recent frames carry the scene across. **Save scene** writes everything
needed to continue (a small .safetensors file); upload it later to **continue** exactly where it
stopped, or tick *state only* to start a new prompt from that scene's look.
"""
# The model's frames are 64 px: drawn with smoothing they look out of focus, so every picture of
# frames or latents on the page is scaled up pixelated (crisp pixel art), the videos too.
CSS = """
#video video, #video-adaptive video, #video-static video, .pixelated img { image-rendering: pixelated; }
"""
log = logging.getLogger("adastate.app")


@contextmanager
def shown_in_ui():
    """Errors reach the visitor as one line: bad input (ValueError) says what is wrong; anything
    else is the server's fault, logged here and not described there (it could name server paths)."""
    try:
        yield
    except ValueError as e:
        raise gr.Error(str(e)) from None
    except Exception:
        log.exception("a request failed")
        raise gr.Error("the server failed on this request (the fault is logged); please try again") from None


def visitor(request: gr.Request | None):
    return request.session_hash if request else None


def plots_or_skip(updates: dict):
    return plots_of(updates) if next(iter(updates.values())).replot else gr.skip()


def to_outputs(update, status):
    if update is None:  # waiting for a free place: only the status changes
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), status, gr.skip()
    return update.segment, update.state, update.peek, plots_or_skip({update.mode: update}), status, update.video


def stream_outputs(updates):
    with shown_in_ui():
        for update, status in updates:
            yield to_outputs(update, status)


@spaces.GPU(duration=lambda prompt, seed, chunks, anchor, steps, window, endless=False, *rest:  # no-op off ZeroGPU
            gpu_duration(reserved_chunks(chunks, endless)))
def generate(prompt, seed, chunks, anchor, steps, window, endless=False, request: gr.Request = None):
    yield from stream_outputs(generate_updates(BACKENDS, prompt, seed, chunks, anchor, steps, window, endless,
                                               VISITORS, visitor(request)))


@spaces.GPU(duration=lambda scene, prompt, seed, chunks, *rest: gpu_duration(reserved_chunks(chunks)))
def resume(scene, prompt, seed, chunks, state_only, request: gr.Request = None):
    yield from stream_outputs(resume_updates(BACKENDS, scene, prompt, seed, chunks, state_only,
                                             VISITORS, visitor(request)))


def switch_prompt(prompt, recache, request: gr.Request = None):
    with shown_in_ui():
        return VISITORS.switch(visitor(request), prompt, recache)


def forget_session(request: gr.Request):
    VISITORS.end(visitor(request))  # the visitor left: stop their stream, remove their files


def save_scene(request: gr.Request = None):
    with shown_in_ui():
        return VISITORS.save(visitor(request))


@spaces.GPU(duration=lambda prompt, seed, chunks, *rest: 2 * gpu_duration(reserved_chunks(chunks)))
def compare(prompt, seed, chunks, steps, window, request: gr.Request = None):
    with shown_in_ui():
        for updates, status in compare_updates(BACKENDS, prompt, seed, chunks, steps, window, VISITORS,
                                               visitor(request)):
            if not updates:  # waiting for a free place
                yield (gr.skip(),) * 8 + (status,) + (gr.skip(),) * 6
                continue
            a, s = updates["adaptive"], updates["static"]
            curves = curves_of(updates)
            yield (a.segment, a.state, a.peek, s.segment, s.state, s.peek, plots_or_skip(updates),
                   summary_of(updates), status, a.video, s.video,
                   a.filmstrip, s.filmstrip, curves, curves, verdict_of(updates))


def state_panel(title, elem_id, height=140):
    with gr.Column(scale=1, min_width=160):
        colours = gr.Image(label=f"{title}: colour projection", interactive=False, height=height, elem_id=elem_id,
                           elem_classes="pixelated")
        peek = gr.Image(label=f"{title}: decoded peek (never part of the video)", interactive=False, height=height,
                        elem_id=elem_id + "-peek", elem_classes="pixelated")
    return colours, peek


def curve(y, title, elem_id):
    return gr.LinePlot(x="chunk", y=y, color="mode", title=title, x_title="chunk", height=220, elem_id=elem_id,
                       color_map={"adaptive state": "#1f77b4", "static anchor": "#ff7f0e"})


# Gradio's own copies (pictures of the state, uploads no session took) go after the time a session
# may stay idle; the demo's files go with their session (adastate.demo.Visitors).
with gr.Blocks(title="AdaState — streaming video with a self-evolving anchor",
               delete_cache=(min(300, SESSION_IDLE_SECONDS), SESSION_IDLE_SECONDS)) as demo:
    gr.Markdown("# AdaState: streaming video with a self-evolving anchor")
    with gr.Accordion("what am I looking at?", open=False):
        gr.Markdown(EXPLANATION)
    with gr.Row():
        prompt = gr.Textbox(label="prompt", value=EXAMPLES[0][0], lines=2, scale=4, max_length=2000, elem_id="prompt")
        with gr.Column(scale=1, min_width=200):
            seed = gr.Number(label="seed", value=0, precision=0, minimum=0, elem_id="seed")
            chunks = gr.Slider(1, MAX_DEMO_CHUNKS, value=16, step=1, label="chunks", elem_id="chunks")
    with gr.Tabs():
        with gr.Tab("generate", id="generate-tab"):
            with gr.Row(equal_height=True):
                anchor = gr.Radio([("adaptive state", "adaptive"), ("static anchor", "static")], value="adaptive",
                                  label="anchor mode", elem_id="anchor", scale=2)
                run = gr.Button("generate", variant="primary", elem_id="generate", scale=1)
                stop = gr.Button("stop", variant="stop", elem_id="stop", scale=1)
                endless = gr.Checkbox(label=f"endless: stream until stop (at most {ENDLESS_CHUNKS} chunks)",
                                      value=False, elem_id="endless", scale=1)
            with gr.Row():
                video = gr.Video(label="video (streams chunk by chunk)", streaming=True, autoplay=True, scale=2,
                                 height=300, elem_id="video")
                colours, peek = state_panel("anchor", "state")
            status = gr.Markdown(elem_id="status")
            with gr.Row():
                switch = gr.Button("switch to the prompt above", elem_id="switch")
                recache = gr.Checkbox(label="re-cache the window under the new prompt", value=RECACHE_ON_SWITCH,
                                      elem_id="recache")
            plots = gr.Plot(label="per chunk")
            download = gr.File(label="finished video (MP4)")
            with gr.Accordion("scene files: save a scene, continue it later", open=False):
                with gr.Row():
                    with gr.Column():
                        save = gr.Button("save scene", elem_id="save-scene")
                        scene_out = gr.File(label="saved scene (.safetensors): download it to continue later",
                                            elem_id="scene-out")
                    with gr.Column():
                        scene_in = gr.File(label="continue a saved scene", file_types=[".safetensors"],
                                           type="filepath", elem_id="scene-in")
                        state_only = gr.Checkbox(
                            label="state only: carry the scene's look into the prompt above (new video, seed above)",
                            value=False, elem_id="state-only")
                        run_resume = gr.Button("continue scene", elem_id="resume")
        with gr.Tab("compare", id="compare-tab"):
            with gr.Row():
                run_both = gr.Button("compare both modes", variant="primary", elem_id="compare")
                stop_both = gr.Button("stop", variant="stop", elem_id="stop-compare")
            with gr.Row():
                video_a = gr.Video(label="adaptive state", streaming=True, autoplay=True, scale=2, height=260,
                                   elem_id="video-adaptive")
                colours_a, peek_a = state_panel("state", "state-adaptive", height=120)
                video_s = gr.Video(label="static anchor", streaming=True, autoplay=True, scale=2, height=260,
                                   elem_id="video-static")
                colours_s, peek_s = state_panel("frozen anchor", "state-static", height=120)
            filmstrip_a = gr.Image(label="adaptive state: one frame every few chunks", interactive=False, height=90,
                                   elem_id="filmstrip-adaptive", elem_classes="pixelated")
            filmstrip_s = gr.Image(label="static anchor: the same chunks", interactive=False, height=90,
                                   elem_id="filmstrip-static", elem_classes="pixelated")
            with gr.Row():
                revert = curve("revert", "revert: likeness to its own first frame (1 = the same picture)",
                               "revert-curve")
                pan = curve("pan speed", "pan speed (px / frame)", "pan-curve")
            summary = gr.Dataframe(headers=SUMMARY_HEADERS, label="summary", interactive=False)
            verdict = gr.Markdown(elem_id="verdict")
            status_both = gr.Markdown(elem_id="status-compare")
            plots_both = gr.Plot(label="per chunk, both modes")
            with gr.Row():
                download_a, download_s = gr.File(label="adaptive (MP4)"), gr.File(label="static (MP4)")
    with gr.Accordion("advanced: denoising steps and window", open=False):
        steps = gr.Slider(1, MAX_STEPS, value=4, step=1, label="denoising steps per chunk")
        window = gr.Slider(1, MAX_WINDOW, value=1, step=1, label="rolling window (previous chunks kept)")
    gr.Examples(EXAMPLES, inputs=[prompt, seed, chunks, anchor])

    # Inputs reach the functions as sent (preprocess=False), so that adastate.demo checks them and
    # names what is wrong. Streams are admitted and take turns in adastate.demo's Scheduler (not in
    # Gradio's queue), where an endless run can see that a visitor waits.
    # No progress overlay on the outputs while they stream: the status line says how far a run is, and
    # the overlay's ticking timer cost the browser a third of its CPU per chunk, which a local
    # demo's model needs (benchmarks/RESULTS.md, "Where a chunk's CPU goes").
    streams = dict(preprocess=False, concurrency_limit=None, show_progress="hidden")
    generating = run.click(generate, [prompt, seed, chunks, anchor, steps, window, endless],
                           [video, colours, peek, plots, status, download], api_name="generate", **streams)
    resuming = run_resume.click(resume, [scene_in, prompt, seed, chunks, state_only],
                                [video, colours, peek, plots, status, download], api_name="resume", **streams)
    # cheap actions on a running stream: never queued behind generations
    switch.click(switch_prompt, [prompt, recache], status, api_name="switch_prompt", concurrency_limit=None,
                 preprocess=False)
    save.click(save_scene, None, scene_out, api_name="save_scene", concurrency_limit=None)
    comparing = run_both.click(compare, [prompt, seed, chunks, steps, window],
                               [video_a, colours_a, peek_a, video_s, colours_s, peek_s, plots_both, summary,
                                status_both, download_a, download_s, filmstrip_a, filmstrip_s, revert, pan, verdict],
                               api_name="compare", **streams)
    stop.click(None, cancels=[generating, resuming])
    stop_both.click(None, cancels=[comparing])

    demo.unload(forget_session)

# the demo's files live in Gradio's cache, so that Gradio serves them where they are (no copies)
VISITORS = Visitors(Path(demo.GRADIO_CACHE) / "adastate", Scheduler(), uploads=Path(demo.GRADIO_CACHE))
demo.queue(default_concurrency_limit=None)


def launch(**options):
    """Serve the demo as it is meant to face the public: uploads no larger than a scene file can
    be (Gradio removes a larger one as it arrives), error messages shown (every message the
    functions raise is one line for people; Gradio's own name the malformed request), idle
    sessions swept, frames drawn pixelated (CSS), the models loading while the server starts."""
    VISITORS.sweep_every(SWEEP_SECONDS)
    BACKENDS.warm_up()
    return demo.launch(max_file_size=upload_limit_bytes(BACKENDS.name), show_error=True, css=CSS, **options)


if __name__ == "__main__":
    launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
