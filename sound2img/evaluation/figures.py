"""Figure rendering (t-SNE scatter plots, exact image grids, as PNG bytes) and the two
t-SNE figures: manipulation directions (supplement Fig. 4) and audio vs text embeddings."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sound2img.evaluation.attribute_edits import AttributeEdits
from sound2img.evaluation.embed import DatasetSpec, EmbeddedFolds
from sound2img.evaluation.latent_stats import flatten_ws
from sound2img.evaluation.report import Report, markdown_table, provenance_markdown

SCATTER_SIZE_PX = (800, 800)
_DPI = 100


def tsne_2d(x, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """``x [N,D]`` → ``[N,2]`` with scikit-learn's t-SNE (PCA init, deterministic for a
    seed). Perplexity is clipped to N−1, which t-SNE requires."""
    from sklearn.manifold import TSNE

    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    x = x.reshape(len(x), -1).astype(np.float64)
    if len(x) < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {len(x)}")
    perplexity = float(min(perplexity, len(x) - 1))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    w, h = SCATTER_SIZE_PX
    fig = plt.figure(figsize=(w / _DPI, h / _DPI), dpi=_DPI)
    return fig, fig.add_subplot(1, 1, 1)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    # No bbox_inches="tight": the PNG keeps exactly SCATTER_SIZE_PX.
    fig.savefig(buf, format="png", dpi=_DPI)
    plt.close(fig)
    return buf.getvalue()


def render_direction_tsne(xy: np.ndarray, is_text: np.ndarray, attributes: Sequence[str], title: str) -> bytes:
    """Supplement Fig. 4: manipulation directions in t-SNE space, text red, sound blue;
    one marker per attribute. ``xy [N,2]``, ``is_text [N]`` bool, ``attributes [N]``."""
    fig, ax = _figure()
    markers = "os^vDP*Xhp<>"
    is_text = np.asarray(is_text, dtype=bool)
    attrs = np.asarray(attributes)
    for i, attr in enumerate(dict.fromkeys(attributes)):
        for flag, colour, modality in ((True, "red", "text"), (False, "blue", "sound")):
            m = (attrs == attr) & (is_text == flag)
            if m.any():
                ax.scatter(
                    xy[m, 0],
                    xy[m, 1],
                    c=colour,
                    marker=markers[i % len(markers)],
                    s=18,
                    alpha=0.7,
                    label=f"{attr} ({modality})",
                )
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    ax.set_xticks([]), ax.set_yticks([])
    return _png(fig)


def render_embedding_tsne(
    xy_audio: np.ndarray, audio_labels: np.ndarray, xy_text: np.ndarray, class_names: Sequence[str], title: str
) -> bytes:
    """Audio embeddings (dots, coloured by class) and the CLIP text embeddings of the class
    prompts (stars, same colours) in one t-SNE map. ``xy_audio [N,2]``, ``xy_text [C,2]``."""
    import matplotlib

    fig, ax = _figure()
    cmap = matplotlib.colormaps["tab20"]
    audio_labels = np.asarray(audio_labels)
    for c, name in enumerate(class_names):
        colour = cmap(c % 20)
        m = audio_labels == c
        if m.any():
            ax.scatter(xy_audio[m, 0], xy_audio[m, 1], color=colour, s=10, alpha=0.6)
        ax.scatter(xy_text[c, 0], xy_text[c, 1], color=colour, marker="*", s=220, edgecolors="black", linewidths=0.8)
        if len(class_names) <= 20:
            ax.annotate(name.replace("_", " "), xy_text[c], fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.scatter([], [], color="grey", s=10, label="audio embedding")
    ax.scatter([], [], color="grey", marker="*", s=120, edgecolors="black", label="CLIP text embedding")
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title)
    ax.set_xticks([]), ax.set_yticks([])
    return _png(fig)


def image_grid_png(img: torch.Tensor) -> bytes:
    """Tile ``img [R,C,3,H,W]`` in [-1,1] edge to edge into one ``(C·W)×(R·H)`` PNG (rows
    and columns are explained in the Markdown caption, so the pixels stay exact)."""
    from sound2img.utils.images import png_bytes, tile

    if img.ndim != 5 or img.shape[2] != 3:
        raise ValueError(f"expected img [R,C,3,H,W], got shape {tuple(img.shape)}")
    r, c, _, h, w = img.shape
    return png_bytes(tile(img.reshape(r * c, 3, h, w), columns=c))


def direction_spread(dirs: torch.Tensor) -> float:
    """Mean distance of manipulation directions ``[N,K]`` from their mean direction (the
    supplement's "farther from the average of the manipulation direction")."""
    return float((dirs - dirs.mean(dim=0, keepdim=True)).norm(dim=-1).mean())


def fig_tsne_directions(
    edits: Sequence[AttributeEdits], provenance: dict, *, perplexity: float = 30.0, seed: int = 0
) -> Report:
    """Supplement Fig. 4: t-SNE of w − w_s (W+ flattened) for text (red) and sound (blue)
    edits of the same sources, with the spread of each set in the JSON."""
    dirs, is_text, attrs, spread = [], [], [], {}
    for e in edits:
        d_a = flatten_ws(e.ws_audio - e.ws_source).double()
        d_t = flatten_ws(e.ws_text - e.ws_source).double()
        dirs += [d_t, d_a]
        is_text += [True] * len(d_t) + [False] * len(d_a)
        attrs += [e.attribute.name] * (len(d_t) + len(d_a))
        spread[e.attribute.name] = {
            "text": direction_spread(d_t),
            "sound": direction_spread(d_a),
            "text_norm": float(d_t.norm(dim=-1).mean()),
            "sound_norm": float(d_a.norm(dim=-1).mean()),
        }
    xy = tsne_2d(torch.cat(dirs), perplexity, seed)
    png = render_direction_tsne(
        xy, np.array(is_text), attrs, "Manipulation directions w − w_s (red: text, blue: sound)"
    )
    rows = [
        [a, f"{s['text']:.4g}", f"{s['sound']:.4g}", f"{s['text_norm']:.4g}", f"{s['sound_norm']:.4g}"]
        for a, s in spread.items()
    ]
    n = len(edits[0].ws_source)
    md = [
        "# Supplement Fig. 4 — t-SNE of manipulation directions",
        "",
        "![directions](fig_tsne_directions.png)",
        "",
        f"{n} source latents per attribute; red: text-guided, blue: sound-guided. The paper: sound-guided "
        "directions are more diverse (farther from their mean) than text-guided ones.",
        "",
        markdown_table(["attribute", "spread (text)", "spread (sound)", "‖w−w_s‖ (text)", "‖w−w_s‖ (sound)"], rows),
        "",
        provenance_markdown(provenance),
    ]
    return Report(
        "fig_tsne_directions",
        "\n".join(md),
        {
            "figure": "fig_tsne_directions",
            "n_latents": n,
            "spread": spread,
            "tsne": {"perplexity": min(perplexity, len(xy) - 1), "seed": seed, "points": len(xy)},
            "provenance": provenance,
        },
        {"fig_tsne_directions.png": png},
    )


def fig_audio_text_tsne(
    emb: EmbeddedFolds,
    spec: DatasetSpec,
    text_emb: torch.Tensor,
    provenance: dict,
    *,
    perplexity: float = 30.0,
    seed: int = 0,
) -> Report:
    """Audio embeddings of a dataset and the CLIP text embeddings of its class prompts in
    one t-SNE map. ``text_emb [C,D]`` (normalised; row c = ``emb.class_names[c]``). The JSON
    gives the mean cosine of each clip to its own class prompt and to the others."""
    a = F.normalize(emb.audio_emb.float(), dim=-1)
    t = F.normalize(text_emb.float().cpu(), dim=-1)
    xy = tsne_2d(torch.cat([a, t]), perplexity, seed)
    png = render_embedding_tsne(
        xy[: len(a)],
        emb.labels.numpy(),
        xy[len(a) :],
        emb.class_names,
        f"{spec.display_name}: audio embeddings (dots) and class text embeddings (stars)",
    )
    cos = a @ t.T
    own = cos.gather(1, emb.labels[:, None]).squeeze(1)
    others = (cos.sum(1) - own) / max(1, t.shape[0] - 1)
    stats = {
        "cos_own_class": float(own.mean()),
        "cos_other_classes": float(others.mean()),
        "n_audio": len(a),
        "n_classes": t.shape[0],
    }
    md = [
        f"# Audio embeddings vs CLIP text embeddings ({spec.display_name})",
        "",
        "![t-SNE](fig_audio_text_tsne.png)",
        "",
        markdown_table(
            ["clips", "classes", "mean cos(audio, own class text)", "mean cos(audio, other classes)"],
            [
                [
                    stats["n_audio"],
                    stats["n_classes"],
                    f"{stats['cos_own_class']:.4f}",
                    f"{stats['cos_other_classes']:.4f}",
                ]
            ],
        ),
        "",
        provenance_markdown(provenance | {"data": [emb.describe(spec)]}),
    ]
    return Report(
        "fig_audio_text_tsne",
        "\n".join(md),
        {
            "figure": "fig_audio_text_tsne",
            "stats": stats,
            "data": emb.describe(spec),
            "tsne": {"perplexity": min(perplexity, len(xy) - 1), "seed": seed, "points": len(xy)},
            "provenance": provenance,
        },
        {"fig_audio_text_tsne.png": png},
    )
