"""The image figures: λ_sim × λ_ID grid (supplement Fig. 2), volume strip (Fig. 8) and
text↔sound latent interpolation strip (Figs. 10–11), each with its numbers in JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from sound2img.errors import UserInputError
from sound2img.evaluation.attribute_edits import Attribute, edit_attribute
from sound2img.evaluation.figures import image_grid_png
from sound2img.evaluation.report import Report, markdown_table, provenance_markdown
from sound2img.manipulation.guidance import encode_sounds, load_sound_for_frontend, mix_latents
from sound2img.manipulation.optimizer import optimize_latents


@dataclass(frozen=True)
class FigureEdit:
    """What an edit figure edits with: the generator, CLIP towers, the audio encoder with
    its front end, the other ``optimize_latents`` arguments (``optim``), the identity loss
    (required when a λ_ID is positive) and the device."""

    generator: torch.nn.Module
    clip: Any
    encoder: torch.nn.Module
    frontend: torch.nn.Module
    optim: dict[str, Any]
    identity: torch.nn.Module | None = None
    device: torch.device | str = "cpu"

    def as_kwargs(self) -> dict[str, Any]:
        """The same, as keyword arguments of ``edit_attribute`` (which takes these names)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def sound_targets(self, sound: str, gains_db: Sequence[float] = (0.0,)) -> torch.Tensor:
        """``audio_emb [G,D]`` of ``sound`` (its first window) at each gain (dB) of ``gains_db``."""
        fe = self.frontend
        wav = load_sound_for_frontend(sound, fe)
        return torch.cat(
            [encode_sounds([wav], self.encoder, fe, gain_db=float(g), device=self.device) for g in gains_db]
        )


def _one_source(source_ws: torch.Tensor) -> torch.Tensor:
    if source_ws.ndim != 3 or source_ws.shape[0] != 1:
        raise ValueError(f"expected one source latent ws [1,num_ws,w_dim], got shape {tuple(source_ws.shape)}")
    return source_ws


def _figure_report(
    name: str, title: str, images: str, caption: str, table: str, provenance: dict, data: dict, pngs: dict
) -> Report:
    """A figure's Markdown (title, images, caption, numbers, provenance) and its JSON
    (``{"figure": name, **data, "provenance": ...}``) and PNGs."""
    md = [f"# {title}", "", images, "", caption, "", table, "", provenance_markdown(provenance)]
    return Report(name, "\n".join(md), {"figure": name, **data, "provenance": provenance}, pngs)


def fig_lambda_grid(
    sound: str,
    source_ws: torch.Tensor,
    edit: FigureEdit,
    *,
    lambda_sims: Sequence[float],
    lambda_ids: Sequence[float],
    provenance: dict,
) -> Report:
    """Supplement Fig. 2: one source ``source_ws [1,num_ws,w_dim]`` edited by one sound
    for every (λ_sim, λ_ID); rows follow ``lambda_sims`` (the paper puts low λ_sim at the
    bottom), columns ``lambda_ids``. ``edit.identity`` is required when a λ_ID is
    positive. Writes the grid and the source image."""
    source_ws = _one_source(source_ws).to(edit.device)
    if not lambda_sims or not lambda_ids:
        raise UserInputError("fig_lambda_grid: lambda_sims and lambda_ids must be non-empty")
    if max(lambda_ids) > 0 and edit.identity is None:
        raise UserInputError("fig_lambda_grid: a positive λ_ID needs the identity network (ArcFace IR-SE50)")
    target = edit.sound_targets(sound)
    optim = {k: v for k, v in edit.optim.items() if k not in ("lambda_sim", "lambda_id")}
    images, cells, source_img = [], [], None
    for ls in lambda_sims:
        row = []
        for li in lambda_ids:
            res = optimize_latents(
                edit.generator,
                edit.clip.encode_image,
                source_ws,
                target,
                lambda_sim=float(ls),
                lambda_id=float(li),
                identity=edit.identity if li > 0 else None,
                **optim,
            )
            source_img = res.source_img
            row.append(res.result_img[0])
            cells.append(
                {
                    "lambda_sim": float(ls),
                    "lambda_id": float(li),
                    "final_cosine": float(res.final_cosine[0]),
                    "latent_distance": float((res.ws - source_ws.cpu()).norm()),
                }
            )
        images.append(torch.stack(row))
    grid = torch.stack(images)
    table = [
        [
            f"λ_sim={c['lambda_sim']:g}",
            f"λ_ID={c['lambda_id']:g}",
            f"{c['final_cosine']:.4f}",
            f"{c['latent_distance']:.4f}",
        ]
        for c in cells
    ]
    return _figure_report(
        "fig_lambda_grid",
        "Supplement Fig. 2 — λ_sim × λ_ID grid",
        "![source](fig_lambda_grid_source.png) ![grid](fig_lambda_grid.png)",
        f"Sound: {sound}. Rows: λ_sim = {', '.join(f'{v:g}' for v in lambda_sims)} (top to bottom); columns: "
        f"λ_ID = {', '.join(f'{v:g}' for v in lambda_ids)} (left to right). The paper: high λ_sim and λ_ID keep "
        "the source's content, low values distort it.",
        markdown_table(["λ_sim", "λ_ID", "cos(CLIP(G(w)), sound)", "‖w − w_s‖"], table, numeric_from=2),
        provenance,
        {
            "sound": sound,
            "lambda_sims": list(map(float, lambda_sims)),
            "lambda_ids": list(map(float, lambda_ids)),
            "cells": cells,
        },
        {"fig_lambda_grid.png": image_grid_png(grid), "fig_lambda_grid_source.png": image_grid_png(source_img[None])},
    )


def fig_volume(
    sound: str, source_ws: torch.Tensor, edit: FigureEdit, *, gains_db: Sequence[float], provenance: dict
) -> Report:
    """Supplement Fig. 8: one source edited by the same sound at several volumes (gain in
    dB before the front end), all gains optimised as one batch. Strip: source, then one
    result per gain. The JSON gives how far each gain moves the audio embedding."""
    source_ws = _one_source(source_ws).to(edit.device)
    if not gains_db:
        raise UserInputError("fig_volume: gains_db must be non-empty")
    embs = edit.sound_targets(sound, [*gains_db, 0.0])  # the last: the 0-dB reference
    targets, reference = embs[:-1], embs[-1:]
    res = optimize_latents(
        edit.generator,
        edit.clip.encode_image,
        source_ws.expand(len(gains_db), -1, -1),
        targets,
        identity=edit.identity,
        **edit.optim,
    )
    strip = torch.cat([res.source_img[:1], res.result_img])[None]
    cells = [
        {"gain_db": float(g), "cos_to_0db_embedding": float((t * reference[0]).sum()), "final_cosine": float(c)}
        for g, t, c in zip(gains_db, targets.cpu(), res.final_cosine)
    ]
    rows = [[f"{c['gain_db']:+g} dB", f"{c['cos_to_0db_embedding']:.4f}", f"{c['final_cosine']:.4f}"] for c in cells]
    return _figure_report(
        "fig_volume",
        "Supplement Fig. 8 — volume",
        "![volume](fig_volume.png)",
        f"Sound: {sound}. Left: source; then gains {', '.join(f'{g:+g}' for g in gains_db)} dB. The paper: the "
        "volume changes details, not the meaning.",
        markdown_table(["gain", "cos(audio_emb, audio_emb at 0 dB)", "cos(CLIP(G(w)), target)"], rows),
        provenance,
        {"sound": sound, "cells": cells},
        {"fig_volume.png": image_grid_png(strip)},
    )


def fig_interpolation(
    sound: str, text: str, source_ws: torch.Tensor, edit: FigureEdit, *, alphas: Sequence[float], provenance: dict
) -> Report:
    """Supplement Figs. 10–11: w = (1 − α)·w_a + α·w_t between the sound-guided and the
    text-guided result of the same source. Strip: source, then one image per α. The JSON
    gives each image's CLIP cosine to the sound and to the text embedding."""
    source_ws = _one_source(source_ws)
    if not alphas:
        raise UserInputError("fig_interpolation: alphas must be non-empty")
    edits = edit_attribute(Attribute("interpolation", sound, text), source_ws, **edit.as_kwargs())
    G, noise_mode = edit.generator, edit.optim.get("noise_mode", "const")
    ws = torch.cat([mix_latents(edits.ws_audio, edits.ws_text, float(a)) for a in alphas]).to(edit.device)
    with torch.no_grad():
        img = G.synthesis(ws, noise_mode=noise_mode)
        source_img = G.synthesis(source_ws.to(edit.device), noise_mode=noise_mode)
        feats = F.normalize(edit.clip.encode_image(img).float(), dim=-1).cpu()
    cells = [
        {"alpha": float(a), "cos_sound": float(f @ edits.audio_target), "cos_text": float(f @ edits.text_target)}
        for a, f in zip(alphas, feats)
    ]
    rows = [[f"{c['alpha']:g}", f"{c['cos_sound']:.4f}", f"{c['cos_text']:.4f}"] for c in cells]
    strip = torch.cat([source_img.cpu(), img.cpu()])[None]
    return _figure_report(
        "fig_interpolation",
        "Supplement Figs. 10–11 — text↔sound latent interpolation",
        "![interpolation](fig_interpolation.png)",
        f"Sound: {sound}; text: {text!r}. Left: source; then α = {', '.join(f'{a:g}' for a in alphas)} "
        "(α = 0: sound-guided w_a, α = 1: text-guided w_t).",
        markdown_table(["α", "cos(CLIP(G(w)), sound)", "cos(CLIP(G(w)), text)"], rows),
        provenance,
        {"sound": sound, "text": text, "cells": cells},
        {"fig_interpolation.png": image_grid_png(strip)},
    )


def fig_audioclip_comparison(
    sounds: Sequence[str],
    source_ws: torch.Tensor,
    *,
    generator: torch.nn.Module,
    guides: Sequence[dict[str, Any]],
    optim: dict[str, Any],
    identity: torch.nn.Module | None,
    provenance: dict,
    device: torch.device | str = "cpu",
) -> Report:
    """Supplement Fig. 3: the same sources ``source_ws [N,num_ws,w_dim]`` edited by the same
    sounds with each guide (``{"label", "encoder", "frontend", "clip"}``: an audio encoder with
    the CLIP towers of its own space; ours and AudioCLIP), side by side. Grid: one row per
    (source, sound), columns source then one result per guide. Per edit: the final cosine to
    the sound in the guide's own space, ‖w − w_s‖ and the PSNR of the result against the source."""
    if not sounds or not guides:
        raise UserInputError("fig_audioclip_comparison: needs at least one sound and one guide")
    source_ws = source_ws.to(device)
    n = source_ws.shape[0]
    results, cells = [], []
    for guide in guides:
        fe = guide["frontend"]
        wavs = [load_sound_for_frontend(s, fe) for s in sounds]
        targets = encode_sounds(wavs, guide["encoder"], fe, device=device)  # [S,D]
        ws = source_ws.repeat_interleave(len(sounds), dim=0)  # rows: source-major, then sound
        res = optimize_latents(
            generator, guide["clip"].encode_image, ws, targets.repeat(n, 1), identity=identity, **optim
        )
        results.append(res)
        mse = ((res.result_img - res.source_img) / 2).square().mean(dim=(1, 2, 3)).clamp(min=1e-12)
        for i in range(ws.shape[0]):
            cells.append(
                {
                    "guide": guide["label"],
                    "source": i // len(sounds),
                    "sound": sounds[i % len(sounds)],
                    "final_cosine": float(res.final_cosine[i]),
                    "latent_distance": float((res.ws[i] - ws[i].cpu()).norm()),
                    "psnr_db": float(-10 * torch.log10(mse[i])),
                }
            )
    columns = [results[0].source_img] + [r.result_img for r in results]
    grid = torch.stack(columns, dim=1)  # [rows, 1 + guides, 3, H, W]
    rows = [
        [
            c["guide"],
            str(c["source"]),
            c["sound"],
            f"{c['final_cosine']:.4f}",
            f"{c['latent_distance']:.4f}",
            f"{c['psnr_db']:.2f}",
        ]
        for c in cells
    ]
    labels = ", ".join(g["label"] for g in guides)
    return _figure_report(
        "fig_audioclip_comparison",
        "Supplement Fig. 3 — our encoder vs AudioCLIP as guidance",
        "![comparison](fig_audioclip_comparison.png)",
        f"Rows: each source (seed order) × sound ({', '.join(sounds)}); columns: source, then {labels}. Each guide "
        "uses the CLIP towers of its own space, so its cosine is comparable only within its column.",
        markdown_table(
            ["guide", "source", "sound", "cos(CLIP(G(w)), sound), own space", "‖w − w_s‖", "PSNR vs source (dB)"],
            rows,
            numeric_from=3,
        ),
        provenance,
        {"sounds": list(sounds), "guides": [g["label"] for g in guides], "cells": cells},
        {"fig_audioclip_comparison.png": image_grid_png(grid)},
    )
