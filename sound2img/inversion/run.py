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
from sound2img.inversion.align import ALIGN_MODES, prepare_image
from sound2img.inversion.images import load_image, to_unit
from sound2img.inversion.projector import SPACES, ProjectorSettings, project
from sound2img.inversion.pti import PTISettings, tune_generator
from sound2img.utils.precision import PRECISIONS, compute_dtype, resolve_precision

METHODS = ("projector", "e4e", "psp", "pti")
PERCEPTUAL = ("lpips", "none")
INVERSION_FILES = ("latent.pt", "aligned.png", "reconstruction.png", "metrics.json")
TUNED_NAME = "tuned_generator.safetensors"
CACHE_VERSION = 1


@dataclass
class InversionOptions:
    """What to do with the photo (checked by :meth:`check`)."""

    method: str = "projector"
    space: str = "wplus"
    perceptual: str = "lpips"
    steps: int | None = None  # projector steps (method default when None); PTI: its projection
    pti_steps: int | None = None
    seed: int = 0
    align: str = "auto"
    encoder: str | None = None  # e4e/pSp checkpoint name or path (e4e, psp)
    pixel_weight: float = 0.0
    noise: str = "fixed"
    precision: str = "fp32"  # the projector's generator passes: fp32 | bf16 | auto (sound2img.utils.precision)

    def check(self) -> InversionOptions:
        for name, value, allowed in (
            ("method", self.method, METHODS),
            ("space", self.space, SPACES),
            ("perceptual", self.perceptual, PERCEPTUAL),
            ("align", self.align, ALIGN_MODES),
            ("precision", self.precision, PRECISIONS),
        ):
            if value not in allowed:
                raise UserInputError(f"invert.{name} must be one of {', '.join(allowed)}, got {value!r}")
        for name in ("steps", "pti_steps"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise UserInputError(f"invert.{name} must be a positive integer, got {v!r}")
        if self.method in ("e4e", "psp") and not self.encoder:
            raise UserInputError(f"--method {self.method} needs an encoder checkpoint (--encoder NAME|PATH)")
        if self.method == "pti" and self.space != "w":
            self.space = "w"  # PTI's pivot is a W latent by definition
        return self

    def record(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Inversion:
    """The result: ``ws [1,num_ws,w_dim]``, ``aligned uint8 [3,R,R]``, ``reconstruction
    [1,3,R,R] in [-1,1]`` (with ``generator``: the tuned copy for PTI, else the input)."""

    ws: torch.Tensor
    aligned: torch.Tensor
    reconstruction: torch.Tensor
    generator: torch.nn.Module
    tuned: bool
    metrics: dict[str, Any] = field(default_factory=dict)


def invert_image(
    image_path: str | Path,
    G,
    opts: InversionOptions,
    *,
    faces: bool,
    lpips: Callable[[], Any] | None = None,
    encoder_loader: Callable[[str], Any] | None = None,
    quality=None,
    progress: bool = False,
) -> Inversion:
    """Invert the photo at ``image_path`` into ``G``. ``lpips``: builds the LPIPS
    distance (needed for ``perceptual='lpips'``); ``encoder_loader(name_or_path)`` →
    ``EncoderCheckpoint``; ``quality``: ``metrics.QualityMetrics`` for the record."""
    opts.check()
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    img = load_image(image_path)
    aligned, align_info = prepare_image(img, G.img_resolution, opts.align, faces=faces, source=str(image_path))
    timings["load_align_s"] = time.perf_counter() - t0
    target = to_unit(aligned).to(G.w_avg.device)
    dist = None
    if opts.perceptual == "lpips" and opts.method in ("projector", "pti"):
        if lpips is None:
            raise UserInputError("perceptual=lpips needs the LPIPS network; use --perceptual none for pixel loss only")
        dist = lpips()
    precision = resolve_precision(opts.precision, G.w_avg.device)
    record: dict[str, Any] = {
        "method": opts.method,
        "precision": precision,  # of the projector's steps; encoders, PTI's tuning and scores run fp32
        "settings": opts.record(),
        "image": str(image_path),
        "image_size": list(img.shape[1:]),
        **align_info,
    }
    tuned_G, tuned = G, False
    t1 = time.perf_counter()
    if opts.method in ("e4e", "psp"):
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
        ws = ckpt.encode(target.to(ckpt.latent_avg.device)).cpu()
        record["encoder"] = {"path": ckpt.path, "type": ckpt.encoder.kind}
    else:
        steps = opts.steps or (450 if opts.method == "pti" else 1000)
        ps = ProjectorSettings(
            steps=steps,
            space=opts.space,
            seed=opts.seed,
            noise=opts.noise,
            pixel_weight=opts.pixel_weight,
            lr=0.1 if opts.method == "projector" else 5e-3,
        )
        proj = project(G, target, settings=ps, lpips=dist, progress=progress, dtype=compute_dtype(precision))
        ws = proj.ws
        record["projector"] = {**ps.to_dict(), "final_loss": proj.losses[-1]}
        if opts.method == "pti":
            timings["project_s"] = time.perf_counter() - t1
            t2 = time.perf_counter()
            st = PTISettings(steps=opts.pti_steps or 350, seed=opts.seed)
            tuning = tune_generator(G, ws, target, settings=st, lpips=dist, progress=progress)
            tuned_G, tuned = tuning.generator, True
            record["pti"] = {**st.to_dict(), "steps_run": tuning.steps_run, "final_loss": tuning.losses[-1]}
            timings["tune_s"] = time.perf_counter() - t2
    timings["invert_s"] = time.perf_counter() - t1
    with torch.no_grad():
        recon = tuned_G.synthesis(ws.to(G.w_avg.device), noise_mode="const").cpu()
    if quality is not None:
        t3 = time.perf_counter()
        record["quality"] = quality.compare(recon, to_unit(aligned))
        timings["metrics_s"] = time.perf_counter() - t3
    timings["total_s"] = time.perf_counter() - t0
    record["timings"] = timings
    return Inversion(ws, aligned, recon, tuned_G, tuned, record)


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
