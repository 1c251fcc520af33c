"""The table of known public files (URL, sha256 or "unverified", format, licence): the
checkpoints and sample sounds the defaults use. ``sound2img.weights`` registers every entry."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

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

ENTRIES = [
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
ENTRIES += [
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
# StyleGAN2 decoder, usable as the generator) and LPIPS' VGG16 and AlexNet backbones.
_E4E_LICENCE = f"MIT (omertov/encoder4editing); the decoder inside is NVIDIA's StyleGAN2 ({_NV_NC})"
ENTRIES += [
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
ENTRIES += [
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
    WeightsEntry(
        "torchvision_alexnet",
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        "alexnet-owt-7be5be79.pth",
        None,
        "torchvision_pth",
        "BSD-3-Clause (torchvision); trained on ImageNet, whose terms are research-only",
        "torchvision's ImageNet AlexNet state dict: the backbone of LPIPS-Alex, PTI's tuning loss (its "
        "linear heads ship with the lpips package)",
        note="sha256 should start with 7be5be79 (torchvision's file-name convention)",
    ),
]
# Peer sound encoders (README, "Choosing a sound encoder"). The AudioCLIP repository keeps the same
# files as Git LFS objects (assets/, sha256 1921885b… Full, 2441d35b… Partial, 537,302,068 bytes
# each); whether the release assets are byte-identical is not published, so they stay unverified.
_AUDIOCLIP = "https://github.com/AndreyGuzhov/AudioCLIP/releases/download/v0.1/"
_AUDIOCLIP_LICENCE = "MIT (AndreyGuzhov/AudioCLIP); its CLIP RN50 towers: MIT (openai/CLIP)"
ENTRIES += [
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
