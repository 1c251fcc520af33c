"""Registry of the public checkpoints and sample sounds the defaults use (URL, sha256 or
"unverified", format, licence) and the download cache behind it: streamed, resumable,
checksum-verified, atomic, and safe when several processes fetch the same file."""

from __future__ import annotations

import contextlib
import dataclasses
import html.parser
import http.client
import http.cookiejar
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from sound2img.errors import UserInputError, WeightsNotAvailableError
from sound2img.registry import Registry
from sound2img.utils.files import looks_like_path, sha256_file

try:  # POSIX; elsewhere concurrent downloads of one file are not serialised (see _exclusive_lock)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

log = logging.getLogger(__name__)

# ``torchscript`` is listed for reference only: loading one runs code, which this project never does.
FORMATS = (
    "rosinality_pt",
    "nvlabs_pkl",
    "soundclip_pth",
    "openai_clip",
    "arcface_pth",
    "audio",
    "torchscript",
    "e4e_pt",
    "torchvision_pth",
    "audioclip_pt",
    "wav2clip_pt",
)
# Formats of audio-encoder files (load_audio_encoder reads each).
AUDIO_ENCODER_FORMATS = ("soundclip_pth", "audioclip_pt", "wav2clip_pt")
USER_AGENT = "sound2img-weights/0.1 (+urllib)"
CHUNK_BYTES = 1 << 16
MAX_HTML_BYTES = 1 << 21  # a confirmation page is small; never buffer a mislabelled file
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclasses.dataclass(frozen=True)
class WeightsEntry:
    """One public file: where it lives, what it must hash to (``None`` = no published
    hash, "unverified"), how to read it (``format``) and under which terms."""

    name: str
    url: str
    filename: str
    sha256: str | None
    format: str
    licence: str
    description: str
    size_bytes: int | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"{self.name}: format {self.format!r} is not one of {FORMATS}")
        if self.sha256 is not None and not _SHA256.match(self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 64 lowercase hex digits or None")
        if not self.filename or Path(self.filename).name != self.filename:
            raise ValueError(f"{self.name}: filename {self.filename!r} must be a bare file name")

    @property
    def verified(self) -> bool:
        return self.sha256 is not None


def _gdrive(file_id: str) -> str:
    return f"https://drive.google.com/uc?export=download&id={file_id}"


_ADA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"
_NGC_SG2 = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/"
_SGS = "https://kr.object.ncloudstorage.com/cvpr2022/"
# Pinned to a commit of kuai-lab/sound-guided-semantic-image-manipulation that holds audiosample/.
_SGS_RAW = (
    "https://raw.githubusercontent.com/kuai-lab/sound-guided-semantic-image-manipulation/"
    "c53bbc1f4fa0f28a0d07729db5f8872ff91e0b1b/audiosample/"
)
_NV_NC = "NVIDIA Source Code License-NC (non-commercial)"
# The LICENSE of their repository at its latest commit (dfba091, 2022-11-04); an earlier
# commit carried MIT. Non-commercial, share-alike.
_SGS_LICENCE = (
    "CC BY-NC-SA 4.0, Copyright (c) 2020-present, Korea University CVLAB (the authors' repository "
    "LICENSE at dfba091; earlier commits carried MIT): non-commercial, share-alike"
)
_GDRIVE_NOTE = (
    "Google Drive: the large-file confirmation page is followed automatically; when Drive "
    "refuses (quota exceeded) download it in a browser"
)

_ENTRIES = [
    WeightsEntry(
        "soundclip_resnet18",
        _SGS + "resnet18_57.pth",
        "resnet18_57.pth",
        None,
        "soundclip_pth",
        _SGS_LICENCE,
        "Authors' audio encoder (3x3 conv stem + timm resnet18, 512-d), trained on the soundclip_legacy "
        "front end; link from the authors' README",
    ),
    WeightsEntry(
        "soundclip_landscape",
        _SGS + "landscape.pt",
        "landscape.pt",
        None,
        "rosinality_pt",
        _SGS_LICENCE,
        "Authors' 256-px StyleGAN2 trained on LHQ landscapes (rosinality format); link from their README",
    ),
    WeightsEntry(
        "rosinality_ffhq1024",
        _gdrive("1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT"),
        "stylegan2-ffhq-config-f.pt",
        None,
        "rosinality_pt",
        f"{_NV_NC}; converted from NVlabs StyleGAN2 (FFHQ images CC BY-NC-SA 4.0)",
        "StyleGAN2 config-f FFHQ 1024 converted to rosinality format, as linked by StyleCLIP and e4e",
        note=_GDRIVE_NOTE,
    ),
    WeightsEntry(
        "rosinality_church256",
        _gdrive("1ZSZOFtw5wZfPhWEzHFB9LI__bikaHsn6"),
        "stylegan2-church-config-f.pt",
        None,
        "rosinality_pt",
        f"{_NV_NC}; converted from NVlabs StyleGAN2",
        "StyleGAN2 config-f LSUN Church 256 in rosinality format, as linked by ReStyle",
        note=_GDRIVE_NOTE,
    ),
    WeightsEntry(
        "rosinality_car512",
        _gdrive("1UmMHHB3DU1trTB8_9Fjkck5ZwArnD81B"),
        "stylegan2-car-config-f.pt",
        None,
        "rosinality_pt",
        f"{_NV_NC}; converted from NVlabs StyleGAN2",
        "StyleGAN2 config-f LSUN Car (512 px generator, 512x384 content) in rosinality format, as linked by ReStyle",
        note=_GDRIVE_NOTE,
    ),
    WeightsEntry(
        "nvlabs_ffhq1024",
        _ADA + "ffhq.pkl",
        "ffhq.pkl",
        None,
        "nvlabs_pkl",
        _NV_NC,
        "FFHQ 1024, original StyleGAN2 (stylegan2-ada-pytorch release)",
    ),
    WeightsEntry(
        "nvlabs_metfaces1024",
        _ADA + "metfaces.pkl",
        "metfaces.pkl",
        None,
        "nvlabs_pkl",
        _NV_NC,
        "MetFaces 1024, ADA transfer from FFHQ (stylegan2-ada-pytorch release)",
    ),
    WeightsEntry(
        "nvlabs_afhqcat512",
        _ADA + "afhqcat.pkl",
        "afhqcat.pkl",
        None,
        "nvlabs_pkl",
        _NV_NC,
        "AFHQ Cat 512, ADA (stylegan2-ada-pytorch release)",
    ),
    WeightsEntry(
        "nvlabs_afhqdog512",
        _ADA + "afhqdog.pkl",
        "afhqdog.pkl",
        None,
        "nvlabs_pkl",
        _NV_NC,
        "AFHQ Dog 512, ADA (stylegan2-ada-pytorch release)",
    ),
    WeightsEntry(
        "nvlabs_afhqwild512",
        _ADA + "afhqwild.pkl",
        "afhqwild.pkl",
        None,
        "nvlabs_pkl",
        _NV_NC,
        "AFHQ Wild 512, ADA (stylegan2-ada-pytorch release)",
    ),
    WeightsEntry(
        "nvlabs_brecahad512",
        _ADA + "brecahad.pkl",
        "brecahad.pkl",
        None,
        "nvlabs_pkl",
        _NV_NC,
        "BreCaHAD 512, ADA (stylegan2-ada-pytorch release)",
    ),
    WeightsEntry(
        "nvlabs_afhqv2_512",
        _NGC_SG2 + "stylegan2-afhqv2-512x512.pkl",
        "stylegan2-afhqv2-512x512.pkl",
        None,
        "nvlabs_pkl",
        _NV_NC,
        "AFHQv2 512 StyleGAN2 (the paper's AFHQv2 generator family; stylegan3 release on NGC)",
    ),
    # OpenAI's own release is a TorchScript archive (code), which this project never loads
    # (torch.load(weights_only=True) refuses it); the same weights re-saved as safetensors
    # by timm/open_clip are what load_clip reads. Pinned to a hub revision: /resolve/main/
    # follows the branch head, and the hash (the file's Git LFS object id) belongs to one file.
    WeightsEntry(
        "openai_vit_b32",
        "https://huggingface.co/timm/vit_base_patch32_clip_224.openai/resolve/"
        "a6f597a30f7b82c51704746581f9a4e41421e878/open_clip_model.safetensors",
        "vit_base_patch32_clip_224.openai.safetensors",
        "e6d1bd7789aa45192b3bf90570a789b478bae1b74ebcce7eddd908e83a2b7c31",
        "openai_clip",
        "MIT (openai/CLIP); see its model card for intended use",
        "OpenAI CLIP ViT-B/32 towers as open_clip safetensors (QuickGELU), the paper's frozen CLIP",
        size_bytes=605_143_284,
    ),
    # OpenAI publishes each file's sha256 as the second-to-last URL component.
    WeightsEntry(
        "openai_vit_b32_torchscript",
        "https://openaipublic.azureedge.net/clip/models/"
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
        "ViT-B-32.pt",
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
        "torchscript",
        "MIT (openai/CLIP); see its model card for intended use",
        "OpenAI's original ViT-B/32 release (TorchScript archive): listed for reference and other "
        "tools; this project refuses to load TorchScript, use openai_vit_b32",
    ),
    WeightsEntry(
        "ir_se50",
        _gdrive("1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn"),
        "model_ir_se50.pth",
        None,
        "arcface_pth",
        "MIT (TreB1eN/InsightFace_Pytorch)",
        "ArcFace IR-SE50 state dict for the identity loss, as linked by pSp / e4e / ReStyle",
        note=_GDRIVE_NOTE,
    ),
]
_SAMPLES = {
    "rain": "raining",
    "thunderstorm": "thunderstorm",
    "wind": "wind",
    "fire": "fire",
    "explosion": "explosion",
    "drill": "drill",
    "giggling": "giggling",
    "sobbing": "sobbing",
}
_ENTRIES += [
    WeightsEntry(
        f"sample_{short}",
        f"{_SGS_RAW}{stem}.wav",
        f"{stem}.wav",
        None,
        "audio",
        _SGS_LICENCE,
        f"Example clip '{stem}' from the authors' repository (audiosample/{stem}.wav); use as --audio sample:{short}",
    )
    for short, stem in _SAMPLES.items()
]

# Photo inversion (sound2img.inversion): e4e / pSp encoders (each file also holds its
# StyleGAN2 decoder, usable as the generator) and LPIPS' VGG16 backbone.
_E4E_LICENCE = f"MIT (omertov/encoder4editing); the decoder inside is NVIDIA's StyleGAN2 ({_NV_NC})"
_ENTRIES += [
    WeightsEntry(
        f"e4e_{domain}",
        _gdrive(file_id),
        f"e4e_{domain}_encode.pt",
        None,
        "e4e_pt",
        _E4E_LICENCE,
        f"e4e encoder (Encoder4Editing on IR-SE50) + its {domain} StyleGAN2 decoder, link from the e4e README",
        note=_GDRIVE_NOTE,
    )
    for domain, file_id in (
        ("ffhq", "1cUv_reLE6k3604or78EranS7XzuVMWeO"),
        ("cars", "17faPqBce2m1AQeLCLHUVXaDfxMRU2QcV"),
        ("horse", "1TkLLnuX86B_BMo2ocYD0kX9kWh53rUVX"),
        ("church", "1-L0ZdnQLwtdy6-A_Ccgq5uNJGTqE7qBa"),
    )
]
_ENTRIES += [
    WeightsEntry(
        "psp_ffhq",
        _gdrive("1bMTNWkh5LArlaWSc_wa8VKyq2V42T2z0"),
        "psp_ffhq_encode.pt",
        None,
        "e4e_pt",
        f"MIT (eladrich/pixel2style2pixel); the decoder inside is NVIDIA's StyleGAN2 ({_NV_NC})",
        "pSp encoder (GradualStyleEncoder on IR-SE50) + FFHQ 1024 decoder, 'StyleGAN Inversion' link "
        "from the pSp README",
        note=_GDRIVE_NOTE,
    ),
    # torchvision names its files by the first 8 hex digits of their sha256; the full hash
    # is not published, so the entry stays unverified.
    WeightsEntry(
        "torchvision_vgg16",
        "https://download.pytorch.org/models/vgg16-397923af.pth",
        "vgg16-397923af.pth",
        None,
        "torchvision_pth",
        "BSD-3-Clause (torchvision); trained on ImageNet, whose terms are research-only",
        "torchvision's ImageNet VGG16 state dict: the backbone of LPIPS-VGG (its linear heads ship with "
        "the lpips package)",
        note="sha256 should start with 397923af (torchvision's file-name convention)",
    ),
]
# Peer sound encoders (README, "Choosing a sound encoder"). The AudioCLIP repository keeps the same
# files as Git LFS objects (assets/, sha256 1921885b… Full, 2441d35b… Partial, 537,302,068 bytes
# each); whether the release assets are byte-identical is not published, so they stay unverified.
_AUDIOCLIP = "https://github.com/AndreyGuzhov/AudioCLIP/releases/download/v0.1/"
_AUDIOCLIP_LICENCE = "MIT (AndreyGuzhov/AudioCLIP); its CLIP RN50 towers: MIT (openai/CLIP)"
_ENTRIES += [
    WeightsEntry(
        "audioclip_partial",
        _AUDIOCLIP + "AudioCLIP-Partial-Training.pt",
        "AudioCLIP-Partial-Training.pt",
        None,
        "audioclip_pt",
        _AUDIOCLIP_LICENCE,
        "AudioCLIP, audio head trained with CLIP RN50 frozen: audio embeddings in vanilla OpenAI RN50 space "
        "(the file holds those towers too)",
        note="537,302,068 bytes",
    ),
    WeightsEntry(
        "audioclip_full",
        _AUDIOCLIP + "AudioCLIP-Full-Training.pt",
        "AudioCLIP-Full-Training.pt",
        None,
        "audioclip_pt",
        _AUDIOCLIP_LICENCE,
        "AudioCLIP, audio head and CLIP RN50 towers trained together: use only with the towers in this file",
        note="537,302,068 bytes",
    ),
    WeightsEntry(
        "wav2clip",
        "https://github.com/descriptinc/lyrebird-wav2clip/releases/download/v0.1.0-alpha/Wav2CLIP.pt",
        "Wav2CLIP.pt",
        None,
        "wav2clip_pt",
        "MIT (descriptinc/lyrebird-wav2clip)",
        "Wav2CLIP ResNet-18 + projection, distilled from OpenAI CLIP ViT-B/32's image tower (the URL "
        "wav2clip.get_model() downloads)",
    ),
]

WEIGHTS: Registry[WeightsEntry] = Registry("weights name", hint="list them with scripts/fetch_weights.py --list")
for _entry in _ENTRIES:
    WEIGHTS.register(_entry.name, _entry)
del _ENTRIES, _entry


def register_weights(entry: WeightsEntry, *, overwrite: bool = False) -> WeightsEntry:
    """Add ``entry`` to the registry (refused when the name or cache file name is taken,
    unless ``overwrite``)."""
    if not overwrite and any(e.filename == entry.filename for _, e in WEIGHTS.items()):
        raise ValueError(f"cache file name {entry.filename!r} is already used by another entry")
    return WEIGHTS.register(entry.name, entry, overwrite=overwrite)


def list_weights() -> list[WeightsEntry]:
    """Every registered entry, sorted by name."""
    return [WEIGHTS.get(k) for k in WEIGHTS.names()]


def _canonical(name: str) -> str:
    name = name.strip()
    # ``sample:rain`` is how sample sounds are named on the command line.
    return "sample_" + name[len("sample:") :] if name.startswith("sample:") else name


def _unknown_name(name: str) -> UserInputError:
    return UserInputError(
        f"{name!r} is neither an existing file nor a registered weights name ({WEIGHTS.suggest(_canonical(name))})"
    )


def get_entry(name: str) -> WeightsEntry:
    """The entry called ``name`` (``sample:rain`` means ``sample_rain``); an unknown name
    raises ``UserInputError`` listing the closest registered names."""
    try:
        return WEIGHTS.get(_canonical(str(name)))
    except UserInputError:
        raise _unknown_name(str(name)) from None


def cache_dir() -> Path:
    """``$SOUND2IMG_CACHE``, else ``$XDG_CACHE_HOME/sound2img``, else ``~/.cache/sound2img``."""
    env = os.environ.get("SOUND2IMG_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "sound2img"


def cached_path(entry: WeightsEntry) -> Path:
    """Where ``entry`` lives in the cache (whether or not it is there yet)."""
    return cache_dir() / entry.filename


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` when given, else ``SOUND2IMG_OFFLINE`` set to 1/true/yes/on."""
    if offline is not None:
        return bool(offline)
    return os.environ.get("SOUND2IMG_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _manual_hint(entry: WeightsEntry, dest: Path) -> str:
    return f"download {entry.url} yourself and put it at {dest}"


def resolve_weights(
    name_or_path: str | os.PathLike, *, allow_download: bool = True, offline: bool | None = None, progress: bool = True
) -> Path:
    """A local file for ``name_or_path``: an existing file is returned as is; a registry
    name is looked up in the cache and downloaded there when missing (unless
    ``allow_download=False`` or offline, which raise ``WeightsNotAvailableError`` naming the
    file, its URL and the exact path to put it at)."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise UserInputError(f"{text} is a directory, expected a weights file or a registered name")
    if _canonical(text) not in WEIGHTS:
        if looks_like_path(text):
            raise UserInputError(f"{text}: no such file")
        raise _unknown_name(text)
    entry = WEIGHTS.get(_canonical(text))
    dest = cached_path(entry)
    if dest.is_file():
        return dest
    if is_offline(offline) or not allow_download:
        why = (
            "downloads are off"
            if not allow_download
            else "SOUND2IMG_OFFLINE is set"
            if offline is None
            else "offline mode is on"
        )
        raise WeightsNotAvailableError(
            f"{entry.filename} ({entry.name}) is not in the cache and {why}: {_manual_hint(entry, dest)}"
        )
    return _download_entry(entry, dest, progress=progress)


class _Interrupted(Exception):
    """The transfer stopped part-way; what arrived stays in the ``.part`` file."""


def _one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


@contextlib.contextmanager
def _exclusive_lock(dest: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on a hidden lock file beside ``dest``. The lock file
    stays: deleting it would race with a process that opened it but has not locked yet."""
    lock_path = dest.with_name(f".{dest.name}.lock")
    with open(lock_path, "a+b") as fh:
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.warning("waiting for another process that is downloading %s", dest.name)
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class _ConfirmPageParser(html.parser.HTMLParser):
    """Finds Google Drive's "can't scan this file for viruses" form (or, on older pages,
    a link carrying ``confirm=``) that leads to the real download."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: list[tuple[str, str]] = []
        self.confirm_href: str | None = None
        self._in_form = False

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        if (
            tag == "form"
            and self.action is None
            and (a.get("id") == "download-form" or "download" in a.get("action", ""))
        ):
            self.action, self._in_form = a.get("action", ""), True
        elif tag == "input" and self._in_form and a.get("type") == "hidden" and a.get("name"):
            self.fields.append((a["name"], a.get("value", "")))
        elif tag == "a" and self.confirm_href is None and "confirm=" in a.get("href", ""):
            self.confirm_href = a["href"]

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False


def _confirm_url(page: str, base_url: str) -> str | None:
    parser = _ConfirmPageParser()
    parser.feed(page)
    if parser.action is not None and parser.fields:
        action = urllib.parse.urljoin(base_url, parser.action)
        return action + ("&" if "?" in action else "?") + urllib.parse.urlencode(parser.fields)
    if parser.confirm_href:
        return urllib.parse.urljoin(base_url, parser.confirm_href)
    return None


def _open(opener, entry: WeightsEntry, dest: Path, offset: int, timeout: float):
    """Open the download at byte ``offset``; follow one HTML confirmation page. Returns the
    response, or ``None`` when the server says the ``.part`` file is already complete."""
    url = entry.url
    for hop in range(2):
        headers = {"User-Agent": USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            resp = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                total = (exc.headers.get("Content-Range") or "").rpartition("/")[2]
                exc.close()
                if total.isdigit() and int(total) == offset:
                    return None
                _part_path(dest).unlink(missing_ok=True)
                raise _Interrupted(f"server refused to resume at byte {offset}; starting over") from exc
            raise WeightsNotAvailableError(
                f"cannot download {entry.name}: HTTP {exc.code} {_one_line(exc.reason)} "
                f"from {url}; {_manual_hint(entry, dest)}"
            ) from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise WeightsNotAvailableError(
                f"cannot download {entry.name} from {url}: {_one_line(reason)}; {_manual_hint(entry, dest)}"
            ) from exc
        if resp.headers.get_content_type() != "text/html":
            return resp
        with resp:
            page = resp.read(MAX_HTML_BYTES).decode("utf-8", errors="replace")
            final_url = resp.geturl()
        url = _confirm_url(page, final_url) if hop == 0 else None
        if url is None:
            break
    raise WeightsNotAvailableError(
        f"cannot download {entry.name}: {entry.url} returned a web page instead of "
        f"the file (a browser download may be needed); {_manual_hint(entry, dest)}"
    )


def _stream(opener, entry: WeightsEntry, dest: Path, *, progress: bool, timeout: float) -> None:
    """Append the rest of the file to ``dest.part`` (restart when the server ignores Range)."""
    from tqdm import tqdm

    part = _part_path(dest)
    have = part.stat().st_size if part.exists() else 0
    resp = _open(opener, entry, dest, have, timeout)
    if resp is None:
        return
    with resp:
        if have and resp.status == 206:
            start = (resp.headers.get("Content-Range") or "").removeprefix("bytes ").partition("-")[0]
            if start != str(have):
                part.unlink(missing_ok=True)
                raise _Interrupted(f"server resumed at byte {start or '?'} instead of {have}; starting over")
            mode = "ab"
        else:
            if have:
                log.info("%s: server ignored the Range request; downloading from the start", entry.name)
            have, mode = 0, "wb"
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        total = have + length if length is not None else entry.size_bytes
        received = 0
        with (
            open(part, mode) as fh,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=entry.filename,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while True:
                try:
                    chunk = resp.read(CHUNK_BYTES)
                except (http.client.HTTPException, OSError) as exc:
                    raise _Interrupted(_one_line(exc)) from exc
                if not chunk:
                    break
                fh.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
    if length is not None and received < length:
        raise _Interrupted(f"connection closed after {have + received} of {have + length} bytes")


def download(
    entry: WeightsEntry,
    dest: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    retries: int = 2,
    timeout: float = 30.0,
) -> Path:
    """Fetch ``entry`` to ``dest`` (default: its cache path) and return ``dest``.

    Streams into ``dest.part`` with a tqdm bar and resumes it with an HTTP Range request
    (from an earlier call, or up to ``retries`` times within this one); verifies the
    sha256 (a mismatch removes the part file and raises) or logs the computed hash of an
    unverified entry; renames into place only after that. An exclusive lock serialises
    processes fetching the same file, and the cache is re-checked once it is held."""
    dest = Path(dest) if dest is not None else cached_path(entry)
    dest.parent.mkdir(parents=True, exist_ok=True)
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with _exclusive_lock(dest):
        if dest.is_file():  # another process finished it while we waited
            return dest
        for attempt in range(retries + 1):
            try:
                _stream(opener, entry, dest, progress=progress, timeout=timeout)
                break
            except _Interrupted as exc:
                if attempt == retries:
                    raise WeightsNotAvailableError(
                        f"download of {entry.name} from {entry.url} was interrupted ({exc}); run the same command "
                        f"again to resume, or {_manual_hint(entry, dest)}"
                    ) from exc
                log.warning("%s: download interrupted (%s); resuming", entry.name, exc)
        part = _part_path(dest)
        digest = sha256_file(part)
        if entry.sha256 is not None and digest != entry.sha256:
            part.unlink(missing_ok=True)
            raise WeightsNotAvailableError(
                f"checksum mismatch for {entry.name} from {entry.url}: expected sha256 {entry.sha256}, got {digest}; "
                f"the partial file was removed; retry, or put a verified copy at {dest}"
            )
        if entry.sha256 is None:
            log.warning("%s is unverified (no published sha256); the downloaded file has sha256 %s", entry.name, digest)
        os.replace(part, dest)
    return dest


# resolve_weights has a keyword called ``download``; it reaches the function through this name.
_download_entry = download


def format_weights_table(entries: list[WeightsEntry] | None = None) -> str:
    """A plain-text table: name, format, verified or not, cached or not, licence."""
    entries = list_weights() if entries is None else entries
    rows = [("name", "format", "sha256", "cached", "licence")]
    rows += [
        (
            e.name,
            e.format,
            "verified" if e.verified else "unverified",
            "yes" if cached_path(e).is_file() else "no",
            e.licence,
        )
        for e in entries
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows)
