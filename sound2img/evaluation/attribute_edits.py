"""The shared experiment behind supplement Tables 1–2 and Fig. 4: N source latents edited
towards one attribute by its sound (w_a) and by its text prompt (w_t, StyleCLIP-style),
through the same latent optimiser."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sound2img.manipulation.guidance import encode_sounds, encode_texts, load_sound_for_frontend
from sound2img.manipulation.optimizer import optimize_latents


@dataclass(frozen=True)
class Attribute:
    """One row of the supplement's tables: a name, the sound that guides (a file path or a
    ``load_sound`` spec) and the text prompt of the text-guided baseline."""

    name: str
    sound: str
    text: str


@dataclass
class AttributeEdits:
    """Results of editing the same ``N`` sources by sound and by text (CPU tensors)."""

    attribute: Attribute
    ws_source: torch.Tensor  # w_s [N,num_ws,w_dim]
    ws_audio: torch.Tensor  # w_a [N,num_ws,w_dim]
    ws_text: torch.Tensor  # w_t [N,num_ws,w_dim]
    feat_audio: torch.Tensor  # CLIP image embedding of G(w_a) [N,D], L2-normalised
    feat_text: torch.Tensor  # CLIP image embedding of G(w_t) [N,D], L2-normalised
    cos_audio: torch.Tensor  # final cos(CLIP(G(w_a)), sound embedding) [N]
    cos_text: torch.Tensor  # final cos(CLIP(G(w_t)), text embedding) [N]
    audio_target: torch.Tensor  # the sound's audio_emb [D] (L2-normalised)
    text_target: torch.Tensor  # the prompt's text embedding [D] (L2-normalised)

    @classmethod
    def of(
        cls,
        attribute: Attribute,
        source_ws: torch.Tensor,
        ws: dict[str, torch.Tensor],
        feat: dict[str, torch.Tensor],
        cos: dict[str, torch.Tensor],
        targets: tuple[torch.Tensor, torch.Tensor],
    ) -> AttributeEdits:
        """From each guidance's (``"sound"``, ``"text"``) latents, image features and final
        cosines, and the two targets ``(audio_emb, text_emb)``."""
        return cls(
            attribute,
            ws_source=source_ws.detach().cpu(),
            ws_audio=ws["sound"],
            ws_text=ws["text"],
            feat_audio=feat["sound"],
            feat_text=feat["text"],
            cos_audio=cos["sound"],
            cos_text=cos["text"],
            audio_target=targets[0],
            text_target=targets[1],
        )


@torch.no_grad()
def encode_attribute_targets(
    attribute: Attribute, clip, encoder: torch.nn.Module, frontend: torch.nn.Module, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sound's audio_emb ``[D]`` and the prompt's text embedding ``[D]`` (both L2-normalised),
    each computed once for all sources."""
    wav = load_sound_for_frontend(attribute.sound, frontend)
    audio = encode_sounds([wav], encoder, frontend, device=device)[0]
    text = encode_texts([attribute.text], clip)[0].to(audio.device)
    return audio, text


def edit_attribute(
    attribute: Attribute,
    source_ws: torch.Tensor,
    *,
    generator: torch.nn.Module,
    clip,
    encoder: torch.nn.Module,
    frontend: torch.nn.Module,
    optim: dict[str, Any],
    identity: torch.nn.Module | None = None,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
) -> AttributeEdits:
    """Edit every row of ``source_ws [N,num_ws,w_dim]`` towards the attribute's sound and,
    separately, its text, with the same optimiser settings ``optim`` (keyword arguments
    of ``optimize_latents``: steps, lr, lambda_sim, lambda_id, latent_term, ...).

    Sources are processed ``batch_size`` at a time; each result equals its edit run alone.
    Images are reduced to their CLIP image embeddings on the fly (not kept)."""
    audio_emb, text_emb = encode_attribute_targets(attribute, clip, encoder, frontend, device)
    ws, feat, cos = ({"sound": [], "text": []} for _ in range(3))
    for start in range(0, source_ws.shape[0], batch_size):
        ws_s = source_ws[start : start + batch_size].to(device)
        for guidance, target in (("sound", audio_emb), ("text", text_emb)):
            res = optimize_latents(generator, clip.encode_image, ws_s, target, identity=identity, **optim)
            with torch.no_grad():
                feat[guidance].append(F.normalize(clip.encode_image(res.result_img.to(device)).float(), dim=-1).cpu())
            ws[guidance].append(res.ws)
            cos[guidance].append(res.final_cosine)
    ws, feat, cos = ({k: torch.cat(v) for k, v in d.items()} for d in (ws, feat, cos))
    return AttributeEdits.of(attribute, source_ws, ws, feat, cos, (audio_emb.cpu(), text_emb.cpu()))


def attribute_job_id(index: int, attribute: Attribute, source: int, guidance: str) -> str:
    """The edit queue's id of one edit: ``<index>-<name>-<source>-<sound|text>``."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", attribute.name).strip("-").lower() or "attr"
    return f"{index:02d}-{slug}-{source:04d}-{guidance}"


def attribute_job_rows(
    index: int,
    attribute: Attribute,
    n: int,
    seed: int,
    optim: dict[str, Any],
    truncation: float,
    generator: str | None = None,
) -> list[dict[str, Any]]:
    """The edit queue's rows (``manipulate.py --jobs``) for ``n`` sources (seeds ``seed`` ..
    ``seed+n-1``, truncated by ``truncation``) edited by the attribute's sound and,
    separately, its text, with the optimiser settings ``optim`` (``optim_kwargs``)."""
    rows = []
    for i in range(n):
        for guidance, column, value in (("sound", "audio", attribute.sound), ("text", "text", attribute.text)):
            # one batch label per guidance: the queue batches the sources as edit_attribute does
            row = {
                "id": attribute_job_id(index, attribute, i, guidance),
                "batch": f"{index:02d}-{guidance}",
                column: [value],
                "seed": [seed + i],
                "mode": "separate",
                "truncation": truncation,
                **{k: optim[k] for k in ("steps", "lr", "lambda_sim", "lambda_id")},
            }
            if generator:
                row["generator"] = generator
            rows.append(row)
    return rows


@torch.no_grad()
def collect_attribute_edits(
    index: int,
    attribute: Attribute,
    edits_dir: str | Path,
    source_ws: torch.Tensor,
    *,
    generator: torch.nn.Module,
    clip,
    encoder: torch.nn.Module,
    frontend: torch.nn.Module,
    noise_mode: str = "const",
    batch_size: int = 8,
    device: torch.device | str = "cpu",
) -> AttributeEdits:
    """Read back the queue's edits of ``attribute_job_rows`` (``result_latent.pt`` and the
    final cosine of ``metrics.json``) for ``source_ws [N,num_ws,w_dim]``; the CLIP image
    features are those of ``G(w)`` rendered again from each latent (what ``edit_attribute``
    computes from the optimiser's last image)."""
    from sound2img.models.stylegan2 import load_latents

    root, n = Path(edits_dir), source_ws.shape[0]
    ws, cos, feat = {}, {}, {}
    for guidance in ("sound", "text"):
        dirs = [root / attribute_job_id(index, attribute, i, guidance) for i in range(n)]
        ws[guidance] = torch.cat(
            [load_latents(d / "result_latent.pt", generator.num_ws, generator.w_dim).float() for d in dirs]
        )
        cos[guidance] = torch.tensor(
            [float(json.loads((d / "metrics.json").read_text())["final_cosine"]) for d in dirs]
        )
        parts = []
        for start in range(0, n, batch_size):
            img = generator.synthesis(ws[guidance][start : start + batch_size].to(device), noise_mode=noise_mode)
            parts.append(F.normalize(clip.encode_image(img).float(), dim=-1).cpu())
        feat[guidance] = torch.cat(parts)
    audio_emb, text_emb = encode_attribute_targets(attribute, clip, encoder, frontend, device)
    return AttributeEdits.of(attribute, source_ws, ws, feat, cos, (audio_emb.cpu(), text_emb.cpu()))


def parse_attributes(rows: Sequence[Any]) -> list[Attribute]:
    """Config rows (mappings with ``name``, ``sound``, ``text``) → ``Attribute``s, with a
    one-line error naming the row that lacks a field."""
    from sound2img.errors import UserInputError

    attrs = []
    for i, row in enumerate(rows):
        missing = [k for k in ("name", "sound", "text") if not row.get(k)]
        if missing:
            raise UserInputError(
                f"attribute #{i} ({row.get('name', '?')}) lacks {missing} (each needs name, sound and text)"
            )
        attrs.append(Attribute(str(row["name"]), str(row["sound"]), str(row["text"])))
    if not attrs:
        raise UserInputError("no attributes configured")
    if len({a.name for a in attrs}) != len(attrs):
        raise UserInputError(f"attribute names repeat: {[a.name for a in attrs]}")
    return attrs
