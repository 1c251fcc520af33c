"""Face alignment as FFHQ was made (the recipe of NVlabs' ffhq-dataset): eye and mouth
landmarks → an oriented square ("quad") → shrink, crop, pad with a blurred reflection,
resample the quad to a square, downscale to the generator's resolution. Landmarks come
from dlib's 68-point predictor (the ``faces`` extra: ``dlib-bin`` + the model file in
``face_recognition_models``); the geometry takes any (68, 2) landmark array."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch

from sound2img.errors import UserInputError

EYE_LEFT, EYE_RIGHT = slice(36, 42), slice(42, 48)  # the 68-point scheme's eye contours
MOUTH_LEFT, MOUTH_RIGHT = 48, 54  # outer mouth corners
TRANSFORM_FACTOR = 4  # resample at 4x the output (FFHQ: 4096 for 1024)
FACES_EXTRA = 'pip install -e ".[faces]"'


def ffhq_quad(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """``landmarks [68,2]`` (x, y pixels) → (``quad [4,2]``: corners top-left,
    bottom-left, bottom-right, top-right of the crop; ``qsize``: its side).

    The square's half-axis x is the eye-to-eye vector minus the eye-to-mouth vector
    turned by 90°, scaled to max(2·|eye-to-eye|, 1.8·|eye-to-mouth|); its centre sits
    a tenth of the way from the eyes' midpoint towards the mouth's."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise UserInputError(f"face landmarks must be a finite [68, 2] array, got {list(lm.shape)}")
    eye_l, eye_r = lm[EYE_LEFT].mean(0), lm[EYE_RIGHT].mean(0)
    eyes = (eye_l + eye_r) / 2
    eye_to_eye = eye_r - eye_l
    eye_to_mouth = (lm[MOUTH_LEFT] + lm[MOUTH_RIGHT]) / 2 - eyes
    turned = np.array([-eye_to_mouth[1], eye_to_mouth[0]])  # eye_to_mouth turned by +90°
    x = eye_to_eye - turned
    norm = np.hypot(*x)
    if norm == 0:
        raise UserInputError("degenerate face landmarks (eyes and mouth coincide)")
    x = x / norm * max(2.0 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth))
    y = np.array([-x[1], x[0]])  # x rotated by +90°
    c = eyes + 0.1 * eye_to_mouth
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(2 * np.hypot(*x))


def align_face(
    img: torch.Tensor, landmarks: np.ndarray, size: int, pad: bool = True, transform_size: int | None = None
) -> torch.Tensor:
    """``img uint8 [3,H,W]`` + ``landmarks [68,2]`` → the FFHQ-aligned face
    ``uint8 [3,size,size]``. ``transform_size``: the side the quad is resampled to before
    the final Lanczos resize (FFHQ: 4·size; e4e's alignment: 256 for 256, no resize)."""
    import PIL.Image
    from scipy.ndimage import gaussian_filter

    quad, qsize = ffhq_quad(landmarks)
    pil = PIL.Image.fromarray(img.permute(1, 2, 0).numpy())
    # Shrink a large face first, so the final resampling never skips pixels.
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        pil = pil.resize(
            (int(np.rint(pil.size[0] / shrink)), int(np.rint(pil.size[1] / shrink))), PIL.Image.Resampling.LANCZOS
        )
        quad, qsize = quad / shrink, qsize / shrink
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    # Crop to the quad plus a border.
    crop = (
        max(lo[0] - border, 0),
        max(lo[1] - border, 0),
        min(hi[0] + border, pil.size[0]),
        min(hi[1] + border, pil.size[1]),
    )
    if crop[2] - crop[0] < pil.size[0] or crop[3] - crop[1] < pil.size[1]:
        pil = pil.crop(crop)
        quad = quad - np.array(crop[:2])
    # Pad where the quad leaves the picture: reflect, blur towards the edges, fade to the median.
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    padding = np.array(
        [
            max(-lo[0] + border, 0),
            max(-lo[1] + border, 0),
            max(hi[0] - pil.size[0] + border, 0),
            max(hi[1] - pil.size[1] + border, 0),
        ]
    )
    if pad and padding.max() > border - 4:
        padding = np.maximum(padding, int(np.rint(qsize * 0.3)))
        arr = np.pad(np.float32(pil), ((padding[1], padding[3]), (padding[0], padding[2]), (0, 0)), "reflect")
        h, w, _ = arr.shape
        yy, xx = np.ogrid[:h, :w]
        with np.errstate(divide="ignore", invalid="ignore"):
            edge = np.maximum(
                1.0 - np.minimum(np.float32(xx) / padding[0], np.float32(w - 1 - xx) / padding[2]),
                1.0 - np.minimum(np.float32(yy) / padding[1], np.float32(h - 1 - yy) / padding[3]),
            )
        edge = np.nan_to_num(edge, nan=0.0, posinf=0.0, neginf=0.0)[..., None]
        sigma = qsize * 0.02
        arr += (gaussian_filter(arr, [sigma, sigma, 0]) - arr) * np.clip(edge * 3.0 + 1.0, 0.0, 1.0)
        arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(edge, 0.0, 1.0)
        pil = PIL.Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        quad = quad + padding[:2]
    big = transform_size or size * TRANSFORM_FACTOR
    pil = pil.transform(
        (big, big), PIL.Image.Transform.QUAD, tuple((quad + 0.5).flatten()), PIL.Image.Resampling.BILINEAR
    )
    if size < big:
        pil = pil.resize((size, size), PIL.Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(pil, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def predictor_path() -> Path:
    """dlib's 68-point shape predictor as shipped by ``face_recognition_models`` (found
    without importing that package, whose import needs setuptools' pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserInputError(f"face alignment needs dlib's landmark model: {FACES_EXTRA}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise UserInputError(f"{path}: dlib's 68-point landmark model is missing; reinstall: {FACES_EXTRA}")
    return path


class LandmarkDetector:
    """dlib's HOG face detector + 68-point shape predictor. ``__call__(img uint8
    [3,H,W]) -> landmarks [68,2]`` of the largest face; no face → ``UserInputError``."""

    def __init__(self, model: str | os.PathLike | None = None):
        try:
            import dlib
        except ImportError:
            raise UserInputError(f"face alignment needs dlib: {FACES_EXTRA}") from None
        self._detect = dlib.get_frontal_face_detector()
        self._predict = dlib.shape_predictor(str(model or predictor_path()))

    def __call__(self, img: torch.Tensor, source: str = "image") -> np.ndarray:
        arr = np.ascontiguousarray(img.permute(1, 2, 0).numpy())
        faces = self._detect(arr, 1)  # one upsampling, as the FFHQ / e4e alignment scripts do
        if len(faces) == 0:
            raise UserInputError(f"{source}: no face found (use --align center or none for other pictures)")
        face = max(faces, key=lambda r: r.width() * r.height())
        shape = self._predict(arr, face)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


ALIGN_MODES = ("auto", "ffhq", "center", "none")
E4E_ALIGN_SIZE = 256  # e4e's own alignment script resamples the quad straight to 256 px


def resolve_align(mode: str, faces: bool) -> str:
    """``auto`` → ``ffhq`` for face generators, ``center`` otherwise; others unchanged."""
    if mode not in ALIGN_MODES:
        raise UserInputError(f"unknown alignment {mode!r} ({', '.join(ALIGN_MODES)})")
    return ("ffhq" if faces else "center") if mode == "auto" else mode


def prepare_image(
    img: torch.Tensor,
    size: int | tuple[int, int],
    mode: str,
    *,
    faces: bool,
    source: str = "image",
    detector: LandmarkDetector | None = None,
    landmarks: np.ndarray | None = None,
) -> tuple[torch.Tensor, dict]:
    """``img uint8 [3,H,W]`` → (``uint8 [3,h,w]`` to invert, ``size``: a side or
    ``(h, w)``; a record of what was done). ``auto`` is ``ffhq`` for face generators,
    ``center`` otherwise; ``none`` only resizes (the picture is squashed when its aspect
    differs). ``landmarks``: already detected ones (ffhq)."""
    from sound2img.inversion.images import center_crop_resize, pil_resize

    mode = resolve_align(mode, faces)
    h, w = (size, size) if isinstance(size, int) else size
    if mode == "ffhq":
        lm = (detector or LandmarkDetector())(img, source) if landmarks is None else landmarks
        quad, _ = ffhq_quad(lm)
        return align_face(img, lm, h), {"align": "ffhq", "quad": quad.round(2).tolist()}
    if mode == "center":
        return center_crop_resize(img, (h, w)), {"align": "center"}
    return pil_resize(img, (h, w)), {"align": "none"}


def prepare_encoder_input(
    img: torch.Tensor,
    size: tuple[int, int],
    mode: str,
    *,
    faces: bool,
    landmarks: np.ndarray | None = None,
) -> torch.Tensor:
    """An e4e/pSp encoder's input from the photo ``img uint8 [3,H,W]``, built as e4e's
    inference does whatever the generator's resolution: the face aligned by e4e's own
    recipe (quad resampled straight to 256 px), or the largest centred box of the
    input's aspect (``center``) or the whole photo (``none``) at the photo's own
    resolution, then e4e's transform (``images.pil_resize_unit``) to ``size = (h, w)``
    → ``[1,3,h,w]`` in [-1,1]."""
    from sound2img.inversion.images import center_box, pil_resize_unit

    mode = resolve_align(mode, faces)
    if mode == "ffhq":
        if landmarks is None:
            raise ValueError("ffhq alignment needs the landmarks")
        img = align_face(img, landmarks, E4E_ALIGN_SIZE, transform_size=E4E_ALIGN_SIZE)
    elif mode == "center":
        top, left, h, w = center_box(img.shape[1], img.shape[2], size[0] / size[1])
        img = img[:, top : top + h, left : left + w]
    return pil_resize_unit(img, size)
