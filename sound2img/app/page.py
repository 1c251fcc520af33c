"""The web page (Gradio): a sound, a prompt and a source in, an edit out, through the
:class:`~sound2img.app.engine.Engine`. Stable ``elem_id``s (sound, text, seed, steps,
run, stop, result, status, download) let tests and users' scripts drive it."""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr

from sound2img.app.engine import MODES, SOURCES, TONE_CLIP, EditRequest, Engine, check_photo, summary_rows
from sound2img.cli import user_message
from sound2img.errors import UserInputError

log = logging.getLogger(__name__)

# small generators (preset=tiny: 32 px) would show as stamps: pictures fill their box, pixels stay sharp
CSS = (
    "#live img, #source_image img, #result img, #strip img {width: 100%; height: 100%; object-fit: contain; "
    "image-rendering: pixelated}"
)
PREVIEW_SIDE = 320  # the uploaded photo's preview, px
INVERT_STATUS_S = 0.25  # the inversion's progress line is refreshed at most this often
INTRO = """# sound2img
Edit a StyleGAN2 image with a sound (or text): the latent is optimised so that CLIP sees the
edited image close to the sound's embedding. Choose a sound, a source and the settings, then **Run**."""


def random_note(networks: list[str]) -> str:
    """The page's warning when networks are random (empty when none is)."""
    if not networks:
        return ""
    return (
        f"**Random networks: {', '.join(networks)}** (preset=tiny, or no weights). Untrained networks give "
        "much the same texture for every sound: this page checks the install, its pictures are not results. "
        "For real edits start `scripts/demo.py` without `preset=tiny` (the files it needs: "
        "`python scripts/fetch_weights.py --for demo`)."
    )


def _image(img) -> Any:
    """img [3,H,W] in [-1,1] (any device) → HWC uint8 array for gr.Image."""
    from sound2img.utils.images import to_uint8

    return to_uint8(img).permute(1, 2, 0).numpy()


def _error_text(exc: BaseException, *uploads: str | None) -> str:
    """One line for the status box; an uploaded file is named by its own name, not by
    the server's temporary path."""
    if isinstance(exc, UserInputError):
        text = f"error: {user_message(exc)}"
    else:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        text = f"internal error: {type(exc).__name__}: {first} (the server log has the details)"
    for path in filter(None, uploads):
        text = text.replace(str(path), Path(path).name)
    return " ".join(text.split())


def _inversion_text(stage: str, done: int, total: int) -> str:
    """A status line for a photo's inversion in progress."""
    if stage == "encoder":
        return "inverting the photo: encoder pass" + (" done" if done else "…")
    return f"inverting the photo: {stage} step {done}/{total}"


class Page:
    """The handlers behind the page; one per server, sharing one engine."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._runs = itertools.count(1)  # every status line of a run names it: "[run N]"

    # ---- sound ------------------------------------------------------------------------
    def pick_sample(self, name: str | None):
        """A sample clip → (the sound input's file, status)."""
        if not name:
            return gr.update(), ""
        try:
            return self._sample_file(name), f"sample {name} loaded"
        except Exception as exc:  # noqa: BLE001 - shown in the page, the server goes on
            return gr.update(), _error_text(exc)

    def _sample_file(self, name: str) -> str:
        if name.startswith("tone:"):
            import soundfile as sf

            from sound2img.manipulation.guidance import load_sound

            path = self.engine.work_dir / f"{name.replace(':', '')}.wav"
            if not path.exists():
                sr = 16000
                sf.write(str(path), load_sound(name, sr).numpy(), sr)
            return str(path)
        from sound2img.weights import resolve_weights

        return str(resolve_weights("sample_" + name[len("sample:") :]))

    def show_mel(self, sound: str | None):
        """The sound → (its mel image, status)."""
        if not sound:
            return None, ""
        try:
            import io

            from PIL import Image

            return Image.open(io.BytesIO(self.engine.mel_png(sound))), f"sound: {Path(sound).name}"
        except Exception as exc:  # noqa: BLE001
            if not isinstance(exc, UserInputError):
                log.exception("mel of %s", sound)
            return None, _error_text(exc, sound)

    # ---- photo ------------------------------------------------------------------------
    def show_photo(self, photo: str | None):
        """An uploaded photo → (its preview, status): read here, as the inversion will
        read it, so that a file that is not a picture is one line in the status box (the
        upload is a plain file, which Gradio passes on without decoding it)."""
        if not photo:
            return None, ""
        try:
            from PIL import Image

            img = check_photo(photo)
            view = Image.fromarray(img.permute(1, 2, 0).numpy())
            view.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))  # any format, shown as the inversion reads it
        except Exception as exc:  # noqa: BLE001 - shown in the page, the server goes on
            if not isinstance(exc, UserInputError):
                log.exception("photo %s", photo)
            return None, _error_text(exc, photo)
        return view, f"photo: {Path(photo).name}, {img.shape[2]}x{img.shape[1]}"

    # ---- edit -------------------------------------------------------------------------
    def stop(self, request: gr.Request = None) -> None:
        """Ask the session's running edit to stop at its next step (the run's own status
        line then says where it stopped; Stop writes none, so the two never race)."""
        key = getattr(request, "session_hash", None) or ""
        with self._lock:
            event = self._stops.get(key)
        if event is not None:
            event.set()

    def run(
        self,
        sound,
        text,
        mode,
        mix_weight,
        source,
        seed,
        latent,
        photo,
        steps,
        lr,
        lambda_sim,
        lambda_id,
        request: gr.Request = None,
    ):
        """Generator of page updates: progress while the edit runs, then its results.
        Outputs: status, live, source, result, strip, metrics, download."""
        key = getattr(request, "session_hash", None) or ""
        tag = f" [run {next(self._runs)}]"
        req = EditRequest(
            sound=sound,
            text=text or "",
            mode=mode,
            mix_weight=mix_weight,
            source=source,
            seed=seed,
            latent=latent,
            photo=photo,
            steps=steps,
            lr=lr,
            lambda_sim=lambda_sim,
            lambda_id=lambda_id,
        )
        blank = (None, None, None, None, None, None)
        try:
            total = self.engine.check_number("steps", steps, integer=True)
        except UserInputError as exc:
            yield (_error_text(exc) + tag, *blank)
            return
        stop = threading.Event()
        with self._lock:
            self._stops[key] = stop
        events: queue.Queue = queue.Queue()
        every = max(1, self.engine.settings.live_every)

        def on_step(done, img, cosine):
            due = done % every == 0 or done == total
            events.put(("step", done, _image(img[0]) if due else None, float(cosine.float().mean())))
            return stop.is_set()

        shown = [0.0]

        def on_invert(stage, done, of):
            # a status line at most every INVERT_STATUS_S (steps can take milliseconds); Stop is
            # checked every step
            now = time.monotonic()
            if done in (0, 1, of) or now - shown[0] >= INVERT_STATUS_S:
                shown[0] = now
                events.put(("invert", stage, done, of))
            return stop.is_set()

        def work():
            from sound2img.inversion.projector import InversionStopped
            from sound2img.manipulation.optimizer import EditStopped

            try:
                events.put(("done", self.engine.run(req, on_step, on_invert)))
            except (EditStopped, InversionStopped) as exc:  # the user's Stop: the engine logged it in one line
                events.put(("error", exc))
            except BaseException as exc:  # noqa: BLE001 - every failure is reported in the page
                if not isinstance(exc, UserInputError):
                    log.exception("edit failed")
                events.put(("error", exc))

        thread = threading.Thread(target=work, name="sound2img-edit", daemon=True)
        thread.start()
        yield ("starting…" + tag, *blank)
        try:
            while True:
                kind, *rest = events.get()
                if kind == "invert":
                    yield (_inversion_text(*rest) + tag, *([gr.update()] * 6))
                elif kind == "step":
                    done, img, cos = rest
                    live = gr.update() if img is None else img
                    yield (
                        f"running: step {done}/{total} · cosine to the target {cos:.4f}{tag}",
                        live,
                        *([gr.update()] * 5),
                    )
                elif kind == "error":
                    from sound2img.inversion.projector import InversionStopped
                    from sound2img.manipulation.optimizer import EditStopped

                    exc = rest[0]
                    if isinstance(exc, EditStopped):
                        text_ = f"stopped after {exc.steps_done} of {total} steps (nothing written)"
                    elif isinstance(exc, InversionStopped):
                        text_ = (
                            f"stopped while inverting the photo ({exc.stage}, {exc.steps_done} steps; nothing written)"
                        )
                    else:
                        text_ = _error_text(exc, sound, latent, photo)
                    yield (text_ + tag, gr.update(), None, None, None, None, None)
                    return
                else:
                    outcome = rest[0]
                    d = outcome.edit_dir
                    m = outcome.metrics
                    cos = m.get("final_cosine")
                    cos_text = (
                        ", ".join(f"{k} {v:.4f}" for k, v in cos.items())
                        if isinstance(cos, dict)
                        else f"{m.get('initial_cosine', float('nan')):.4f} → {cos:.4f}"
                    )
                    yield (
                        f"done: edit {outcome.number}, {total} steps · cosine {cos_text}{tag}",
                        gr.update(),
                        str(d / "source.png"),
                        str(d / "result.png"),
                        str(d / "strip.png"),
                        summary_rows(m),
                        str(outcome.zip_path),
                    )
                    return
        finally:
            stop.set()  # a closed page (cancelled generator) stops the edit too
            thread.join()
            with self._lock:
                if self._stops.get(key) is stop:
                    del self._stops[key]


def build_page(engine: Engine):
    """The ``gr.Blocks`` of the app (not launched): the edit page and the video tab."""
    from sound2img.app.video_tab import build_video_tab

    edit_page, page = _edit_blocks(engine)
    with gr.Blocks(title="sound2img", analytics_enabled=False) as demo:
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("edit", elem_id="tab_edit"):
                edit_page.render()
            with gr.Tab("video", elem_id="tab_video"):
                build_video_tab(engine, engine.sample_choices(), page.pick_sample)
    return demo


def _edit_blocks(engine: Engine):
    """The edit page's ``gr.Blocks`` and its ``Page`` handlers."""
    page = Page(engine)
    b, d = engine.bounds, engine.defaults
    with gr.Blocks(title="sound2img", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        note = random_note(engine.random_networks())
        if note:
            gr.Markdown(note, elem_id="random_note")
        with gr.Row():
            with gr.Column():
                sound = gr.Audio(
                    label="sound (upload or record)", sources=["upload", "microphone"], type="filepath", elem_id="sound"
                )
                sample = gr.Dropdown(
                    engine.sample_choices(),
                    value=None,
                    label="…or a sample clip",
                    elem_id="sample",
                    info=f"{TONE_CLIP} is made on the spot (offline)",
                )
                mel = gr.Image(label="what the encoder sees (mel spectrogram)", interactive=False, elem_id="mel")
                text = gr.Textbox(label="text prompt (optional)", elem_id="text")
                mode = gr.Radio(list(MODES), value="sound only", label="mode", elem_id="mode")
                mix = gr.Slider(
                    *b["mix_weight"], value=d["mix_weight"], label="text's share α (mixes)", elem_id="mix_weight"
                )
            with gr.Column():
                source = gr.Radio(
                    list(SOURCES),
                    value="seed",
                    label="source",
                    elem_id="source",
                    info="photo: inverted as manipulate.py --image does (cached)",
                )
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, minimum=0, label="seed", elem_id="seed")
                    rand = gr.Button("random", elem_id="random", scale=0)
                latent = gr.File(
                    label="latent file (.pt/.npy/.npz)",
                    file_types=[".pt", ".npy", ".npz"],
                    type="filepath",
                    elem_id="latent",
                )
                # a plain file, read by the app itself (show_photo): Gradio's image input would decode
                # it first and fail every later run with its own message when it is not a picture
                photo = gr.File(label="photo (JPEG, PNG, ...)", type="filepath", elem_id="photo")
                photo_view = gr.Image(label="photo as uploaded", interactive=False, elem_id="photo_preview", height=160)
                steps = gr.Slider(*b["steps"], value=d["steps"], step=1, label="steps", elem_id="steps")
                lr = gr.Slider(*b["lr"], value=d["lr"], label="lr", elem_id="lr")
                lsim = gr.Slider(
                    *b["lambda_sim"], value=d["lambda_sim"], step=0.0005, label="λ_sim", elem_id="lambda_sim"
                )
                lid = gr.Slider(*b["lambda_id"], value=d["lambda_id"], step=0.0005, label="λ_ID", elem_id="lambda_id")
                with gr.Row():
                    run = gr.Button("Run", variant="primary", elem_id="run")
                    stop = gr.Button("Stop", variant="stop", elem_id="stop")
                status = gr.Textbox(label="status", interactive=False, elem_id="status")
                live = gr.Image(label="current image", interactive=False, elem_id="live", height=256)
        with gr.Row():
            src_img = gr.Image(label="source", interactive=False, elem_id="source_image", height=320)
            result = gr.Image(label="result", interactive=False, elem_id="result", height=320)
        strip = gr.Image(label="strip (source, steps…, result)", interactive=False, elem_id="strip", height=200)
        metrics = gr.Dataframe(headers=["quantity", "value"], label="metrics", interactive=False, elem_id="metrics")
        download = gr.File(label="everything manipulate.py writes (zip)", interactive=False, elem_id="download")

        sample.change(page.pick_sample, sample, [sound, status], concurrency_limit=None, concurrency_id="light")
        sound.change(page.show_mel, sound, [mel, status], concurrency_limit=None, concurrency_id="light")
        photo.change(page.show_photo, photo, [photo_view, status], concurrency_limit=None, concurrency_id="light")
        rand.click(lambda: __import__("random").randrange(2**31), None, seed, queue=False)
        run.click(
            page.run,
            [sound, text, mode, mix, source, seed, latent, photo, steps, lr, lsim, lid],
            [status, live, src_img, result, strip, metrics, download],
            concurrency_limit=engine.settings.concurrency,
            concurrency_id="edit",
        )
        stop.click(page.stop, None, None, queue=False)
    return demo, page


def launch(
    engine: Engine, *, host: str = "127.0.0.1", port: int | None = None, share: bool = False, block: bool = True
):
    """Build and serve the page; returns the Blocks (``block=False``: serving in a thread)."""
    demo = build_page(engine)
    demo.queue(max_size=engine.settings.max_queue)
    demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        inbrowser=False,
        quiet=False,
        max_file_size=f"{int(engine.settings.max_upload_mb)}mb",
        allowed_paths=[str(engine.work_dir)],
        prevent_thread_lock=not block,
        show_error=True,
        css=CSS,
    )
    return demo
