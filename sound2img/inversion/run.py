"""A photo → a W+ latent (and, for PTI, a tuned generator copy): load and align the
image, invert it by the chosen method, score the reconstruction, and write the result
(``latent.pt``, ``aligned.png``, ``reconstruction.png``, ``metrics.json``, for PTI also
``tuned_generator.safetensors``) all-or-nothing. Results are cached by image content,
generator, method and settings, so a second edit of the same photo does not invert again."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sound2img.errors import UserInputError
from sound2img.inversion.align import (
    ALIGN_MODES,
    LandmarkDetector,
    prepare_encoder_input,
    prepare_image,
    resolve_align,
)
from sound2img.inversion.images import load_image, to_unit
from sound2img.inversion.projector import (
    NOISE_MODES,
    SPACES,
    InversionStopped,
    ProjectorSettings,
    project,
    projector_settings,
)
from sound2img.inversion.pti import PTISettings, tune_generator
from sound2img.utils.precision import PRECISIONS, compute_dtype, resolve_precision

METHODS = ("projector", "e4e", "psp", "pti")
PERCEPTUAL = ("lpips", "none")
RECIPES = ("ours", "nvlabs")  # the projector's named settings (projector.PRESETS; PTI uses its own)
INVERSION_FILES = ("latent.pt", "aligned.png", "reconstruction.png", "metrics.json")
TUNED_NAME = "tuned_generator.safetensors"
CACHE_VERSION = 2  # 2: the projector's and the encoders' inputs and settings changed


@dataclass
class InversionOptions:
    """What to do with the photo (checked by :meth:`check`). ``None``: the recipe's value
    (``projector.PRESETS``: ours, nvlabs; PTI's pivot projection for ``pti``)."""

    method: str = "projector"
    projector: str = "ours"  # the projector's recipe (method projector)
    space: str | None = None
    perceptual: str = "lpips"
    steps: int | None = None  # projector steps; pti: its pivot projection's
    pti_steps: int | None = None
    seed: int = 0
    align: str = "auto"
    encoder: str | None = None  # e4e/pSp checkpoint name or path (e4e, psp)
    pixel_weight: float | None = None
    noise: str | None = None
    precision: str = "fp32"  # the projector's generator passes: fp32 | bf16 | auto (sound2img.utils.precision)

    def check(self) -> InversionOptions:
        for name, value, allowed in (
            ("method", self.method, METHODS),
            ("projector", self.projector, RECIPES),
            ("space", self.space, (None, *SPACES)),
            ("perceptual", self.perceptual, PERCEPTUAL),
            ("align", self.align, ALIGN_MODES),
            ("precision", self.precision, PRECISIONS),
            ("noise", self.noise, (None, *NOISE_MODES)),
        ):
            if value not in allowed:
                shown = ", ".join(a for a in allowed if a is not None)
                raise UserInputError(f"invert.{name} must be one of {shown}, got {value!r}")
        for name in ("steps", "pti_steps"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise UserInputError(f"invert.{name} must be a positive integer, got {v!r}")
        if self.pixel_weight is not None and not self.pixel_weight >= 0:
            raise UserInputError(f"invert.pixel_weight must be >= 0, got {self.pixel_weight!r}")
        if self.method in ("e4e", "psp") and not self.encoder:
            raise UserInputError(f"--method {self.method} needs an encoder checkpoint (--encoder NAME|PATH)")
        if self.method == "pti" and self.space not in (None, "w"):
            self.space = "w"  # PTI's pivot is a W latent by definition
        return self

    def record(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def projector_settings(self) -> ProjectorSettings:
        """The projection's settings: the recipe (PTI's for ``pti``) with the options given."""
        return projector_settings(
            "pti" if self.method == "pti" else self.projector,
            steps=self.steps,
            space=self.space,
            noise=self.noise,
            pixel_weight=self.pixel_weight,
            seed=self.seed,
        )


@dataclass
class Inversion:
    """The result: ``ws [1,num_ws,w_dim]``, ``aligned uint8 [3,h,w]`` (the photo as the
    reconstruction's ``content_rows`` show it), ``reconstruction [1,3,R,R] in [-1,1]``
    (with ``generator``: the tuned copy for PTI, else the input)."""

    ws: torch.Tensor
    aligned: torch.Tensor
    reconstruction: torch.Tensor
    generator: torch.nn.Module
    tuned: bool
    metrics: dict[str, Any] = field(default_factory=dict)


# on_progress(stage, done, total) -> stop?: stage "encoder" (done 0 then 1 of 1), "projection", "tuning"
Progress = Callable[[str, int, int], "bool | None"]


def _stage(on_progress: Progress | None, stage: str):
    return None if on_progress is None else (lambda done, total: on_progress(stage, done, total))


def invert_image(
    image_path: str | Path,
    G,
    opts: InversionOptions,
    *,
    faces: bool,
    lpips: Callable[[], Any] | None = None,
    pti_lpips: Callable[[], Any] | None = None,
    encoder_loader: Callable[[str], Any] | None = None,
    quality=None,
    progress: bool = False,
    on_progress: Progress | None = None,
) -> Inversion:
    """Invert the photo at ``image_path`` into ``G``. ``lpips``: builds the projection's
    LPIPS distance (VGG16, ≤256 px; needed for ``perceptual='lpips'``); ``pti_lpips``: PTI's
    tuning distance (AlexNet, full resolution; ``lpips`` when None); ``encoder_loader(name_or_path)``
    → ``EncoderCheckpoint``; ``quality``: ``metrics.QualityMetrics`` for the record;
    ``on_progress(stage, done, total)``: a true return stops with ``InversionStopped``."""
    opts.check()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    img = load_image(image_path)
    ckpt = _encoder(opts, G, encoder_loader) if opts.method in ("e4e", "psp") else None
    if ckpt is not None and ckpt.faces is not None:
        faces = ckpt.faces  # the encoder knows what it was trained on (e.g. a decoder file as the generator)
    mode = resolve_align(opts.align, faces)
    landmarks = LandmarkDetector()(img, str(image_path)) if mode == "ffhq" else None
    R = G.img_resolution
    top, bottom = ckpt.content_rows(R) if ckpt is not None else (0, R)
    aligned, align_info = prepare_image(img, (bottom - top, R), mode, faces=faces, landmarks=landmarks)
    timings["load_align_s"] = time.perf_counter() - t0
    precision = resolve_precision(opts.precision, G.w_avg.device)
    record: dict[str, Any] = {
        "method": opts.method,
        "precision": precision,  # of the projector's steps; encoders, PTI's tuning and scores run fp32
        "settings": opts.record(),
        "image": str(image_path),
        "image_size": list(img.shape[1:]),
        **align_info,
    }
    if (top, bottom) != (0, R):
        record["content_rows"] = [top, bottom]
    tuned_G, tuned = G, False
    t1 = time.perf_counter()
    if ckpt is not None:
        x = prepare_encoder_input(img, ckpt.input_size, mode, faces=faces, landmarks=landmarks)
        if on_progress is not None and on_progress("encoder", 0, 1):
            raise InversionStopped("encoder", 0)
        ws = ckpt.encode(x).cpu()
        if on_progress is not None:
            on_progress("encoder", 1, 1)
        record["encoder"] = {"path": ckpt.path, "type": ckpt.encoder.kind, "input_size": list(ckpt.input_size)}
    else:
        ws, tuned_G = _optimise(
            G, to_unit(aligned), opts, record, timings, lpips, pti_lpips, progress, on_progress, precision
        )
        tuned = tuned_G is not G
    timings["invert_s"] = time.perf_counter() - t1
    with torch.no_grad():
        recon = tuned_G.synthesis(ws.to(G.w_avg.device), noise_mode="const").cpu()
    if quality is not None:
        t3 = time.perf_counter()
        record["quality"] = quality.compare(recon[..., top:bottom, :], to_unit(aligned))
        timings["metrics_s"] = time.perf_counter() - t3
    timings["total_s"] = time.perf_counter() - t0
    record["timings"] = timings
    return Inversion(ws, aligned, recon, tuned_G, tuned, record)


def _encoder(opts: InversionOptions, G, encoder_loader):
    """The e4e/pSp checkpoint ``opts.encoder``, checked against the method and ``G``."""
    ckpt = encoder_loader(opts.encoder)
    expected = "Encoder4Editing" if opts.method == "e4e" else "GradualStyleEncoder"
    if ckpt.encoder.kind != expected:
        raise UserInputError(
            f"{opts.encoder}: holds a {ckpt.encoder.kind}, not the {opts.method} encoder "
            f"({expected}); use --method {'psp' if opts.method == 'e4e' else 'e4e'}"
        )
    if ckpt.encoder.style_count != G.num_ws:
        raise UserInputError(
            f"{opts.encoder}: encodes {ckpt.encoder.style_count} W+ rows, the generator has "
            f"{G.num_ws} (use the generator the encoder was trained with)"
        )
    return ckpt


def _optimise(G, target, opts, record, timings, lpips, pti_lpips, progress, on_progress, precision):
    """The projector (and for PTI the tuning) on ``target [1,3,R,R]`` → (ws, generator)."""
    dist = tune_dist = None
    if opts.perceptual == "lpips":
        if lpips is None:
            raise UserInputError("perceptual=lpips needs the LPIPS network; use --perceptual none for pixel loss only")
        dist = lpips()
        if opts.method == "pti":
            tune_dist = pti_lpips() if pti_lpips is not None else dist
    t1 = time.perf_counter()
    ps = opts.projector_settings()
    target = target.to(G.w_avg.device)
    proj = project(
        G,
        target,
        settings=ps,
        lpips=dist,
        progress=progress,
        on_step=_stage(on_progress, "projection"),
        dtype=compute_dtype(precision),
    )
    record["projector"] = {**ps.to_dict(), "recipe": "pti" if opts.method == "pti" else opts.projector}
    record["projector"]["final_loss"] = proj.losses[-1]
    if opts.method != "pti":
        return proj.ws, G
    timings["project_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    st = PTISettings(steps=opts.pti_steps or PTISettings.steps, seed=opts.seed)
    tuning = tune_generator(
        G, proj.ws, target, settings=st, lpips=tune_dist, progress=progress, on_step=_stage(on_progress, "tuning")
    )
    record["pti"] = {
        **st.to_dict(),
        "steps_run": tuning.steps_run,
        "final_loss": tuning.losses[-1] if tuning.losses else None,
    }
    timings["tune_s"] = time.perf_counter() - t2
    return proj.ws, tuning.generator


def write_inversion(out_dir: str | Path, inv: Inversion, *, overwrite: bool, extra: dict | None = None) -> Path:
    """Write ``inv`` into ``out_dir`` (checked by the caller with ``check_out_dir``):
    staged in a hidden sibling and renamed into place, ``metrics.json`` last."""
    from sound2img.models.stylegan2 import save_generator, save_latents
    from sound2img.utils.files import atomic_write_bytes, atomic_write_text, staged_dir
    from sound2img.utils.images import png_bytes
    from sound2img.utils.versions import package_versions

    out = Path(out_dir)
    with staged_dir(out) as root:
        (root / "metrics.json").unlink(missing_ok=True)
        save_latents(root / "latent.pt", inv.ws[0], overwrite=True)
        atomic_write_bytes(root / "aligned.png", png_bytes(to_unit(inv.aligned)[0]))
        atomic_write_bytes(root / "reconstruction.png", png_bytes(inv.reconstruction[0]))
        files = list(INVERSION_FILES)
        if inv.tuned:
            save_generator(inv.generator, root / TUNED_NAME, overwrite=True)
            files.append(TUNED_NAME)
        record = {**inv.metrics, "files": files, "versions": package_versions(), **(extra or {})}
        atomic_write_text(root / "metrics.json", json.dumps(record, indent=1, allow_nan=False) + "\n")
    return out


# --- the cache behind manipulate.py --image -------------------------------------------


def _sha256_bytes(path: Path) -> str:
    from sound2img.utils.files import sha256_file

    return sha256_file(path)


def cache_key(image_path: str | Path, generator_id: dict, opts: InversionOptions) -> str:
    """Hex key from the image's bytes, the generator's identity and the inversion settings."""
    payload = {
        "v": CACHE_VERSION,
        "image": _sha256_bytes(Path(image_path)),
        "generator": generator_id,
        "opts": {k: v for k, v in opts.record().items()},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def cached_inversion(cache_root: Path, key: str) -> Path | None:
    """The cached result directory for ``key`` when complete (``metrics.json`` present)."""
    d = Path(cache_root) / key
    return d if (d / "metrics.json").is_file() and (d / "latent.pt").is_file() else None


def store_inversion(cache_root: Path, key: str, inv: Inversion) -> Path:
    """Write ``inv`` as the cache entry ``key`` (atomic; a concurrent writer's complete
    entry wins)."""
    d = Path(cache_root) / key
    if cached_inversion(cache_root, key):
        return d
    if d.exists():  # an incomplete leftover
        shutil.rmtree(d, ignore_errors=True)
    try:
        return write_inversion(d, inv, overwrite=False)
    except UserInputError:
        if cached_inversion(cache_root, key):
            return d
        raise
