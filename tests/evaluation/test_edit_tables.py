"""Supplement Tables 1–2 and the figures end to end with preset=tiny (random small
generator, CLIP, encoder and IR-SE) through the library: well-formed outputs, and the
known answers (no optimisation ⇒ cosine 1; separable image features ⇒ accuracy 1)."""

from __future__ import annotations

import io
import json

import pytest
import torch
from PIL import Image

from sound2img.evaluation.attribute_classification import supp_table2
from sound2img.evaluation.attribute_edits import Attribute, AttributeEdits
from sound2img.evaluation.report import save_report
from sound2img.evaluation.tables import compose_table, output_paths, run_table

ATTRS = [
    {"name": "giggling", "domain": "faces", "sound": "tone:300", "text": "giggling"},
    {"name": "fire crackling", "domain": "scenes", "sound": "tone:2000", "text": "fire crackling"},
    {"name": "thunderstorm", "domain": "scenes", "sound": "tone:90", "text": "thunderstorm"},
]
FAST = ["preset=tiny", "device=cpu", "progress=false", "manipulate.steps=3"]


def _cfgs(table, *overrides):
    from omegaconf import OmegaConf

    cfgs = compose_table(table, [*FAST, *overrides])
    for cfg in cfgs:
        cfg.attributes = OmegaConf.create(ATTRS)
    return cfgs


def _png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def _resolution(cfg) -> int:
    from sound2img import factory

    return factory.build_generator_from_cfg(cfg.generator, "cpu").img_resolution


def test_supp_table1_no_optimisation_gives_cosine_one(tmp_path):
    """One step at the ramp's zero learning rate leaves w_a = w_t = w_s: every cosine is 1
    (through sources, targets, the optimiser on both guidances and the statistics)."""
    cfgs = _cfgs(
        "supp_table1",
        "manipulate.steps=1",
        "eval.n_latents=3",
        "eval.batch_size=2",
        "eval.attributes=[giggling,thunderstorm]",
    )
    report = run_table("supp_table1", cfgs)
    assert list(report.data["ours"]["attributes"]) == ["giggling", "thunderstorm"]
    for attr in ("giggling", "thunderstorm"):
        for pair in ("w_s,w_a", "w_s,w_t", "w_a,w_t"):
            stats = report.data["ours"]["attributes"][attr][pair]
            assert stats["mean"] == pytest.approx(1.0, abs=1e-6) and stats["n"] == 3
    paths = save_report(report, tmp_path)
    md = paths[0].read_text()
    assert "| (w_s,w_a) | mean (this run) |" in md and "0.98568" in md and "preset=tiny" in md
    assert "identity (IR-SE50)" in md  # the faces domain has λ_ID > 0: the tiny IR-SE was built and named
    assert json.loads(paths[1].read_text())["paper"]["w_a,w_t"]["average"]["mean"] == 0.98295


@pytest.mark.slow
def test_supp_table1_and_2_after_real_steps(tmp_path):
    cfgs = _cfgs(
        "supp_table2",
        "eval.n_latents=3",
        "eval.batch_size=3",
        "eval.n_splits=2",
        "eval.attributes=[fire crackling,thunderstorm]",
    )
    report = run_table("supp_table2", cfgs)
    ours = report.data["ours"]
    assert set(ours) == {"StyleCLIP", "ours"}
    for r in ours.values():
        assert set(r["per_attribute"]) == {"fire crackling", "thunderstorm"} and r["n"] == 6
        assert 0.0 <= r["average"] <= 1.0
    assert report.data["not_run"] == ["TediGAN"]
    md = save_report(report, tmp_path)[0].read_text()
    assert "| TediGAN (this run) | not run | not run | not run |" in md
    assert "| ours (paper) | 0.953 | 0.993 | 0.983 |" in md

    t1 = run_table("supp_table1", _cfgs("supp_table1", "eval.n_latents=2", "eval.attributes=[thunderstorm]"))
    stats = t1.data["ours"]["attributes"]["thunderstorm"]["w_s,w_a"]
    assert stats["mean"] < 1.0  # real steps moved the latent


def _edits_with_features(feat_audio, feat_text, n):
    out = []
    for i, (fa, ft) in enumerate(zip(feat_audio, feat_text)):
        ws = torch.zeros(n, 2, 3)
        out.append(
            AttributeEdits(
                Attribute(f"a{i}", "tone:1", "x"),
                ws,
                ws,
                ws,
                fa,
                ft,
                torch.ones(n),
                torch.ones(n),
                torch.ones(3),
                torch.ones(3),
            )
        )
    return out


def test_supp_table2_separated_features_score_one_and_mixed_ones_do_not():
    n, dim = 12, 8
    g = torch.Generator().manual_seed(0)
    centres = 3 * torch.eye(dim)[:3]
    separated = [centres[i] + 0.05 * torch.randn(n, dim, generator=g) for i in range(3)]
    shared = [torch.randn(n, dim, generator=g) for _ in range(3)]  # the same distribution for every attribute
    res = supp_table2(_edits_with_features(separated, shared, n), n_splits=3)
    assert res["ours"]["average"] == 1.0 and res["ours"]["overall"] == 1.0
    assert res["StyleCLIP"]["overall"] < 0.75


@pytest.mark.slow
def test_fig_tsne_directions(tmp_path):
    cfgs = _cfgs("fig_tsne_directions", "eval.n_latents=3", "eval.attributes=[giggling,thunderstorm]")
    report = run_table("fig_tsne_directions", cfgs)
    assert set(report.data["spread"]) == {"giggling", "thunderstorm"}
    assert report.data["tsne"] == {"perplexity": 11, "seed": 0, "points": 12}  # 30 clipped to N − 1
    assert _png_size(report.pngs["fig_tsne_directions.png"]) == (800, 800)
    assert [p.name for p in save_report(report, tmp_path)] == [
        p.name for p in output_paths("fig_tsne_directions", tmp_path)
    ]


@pytest.mark.slow
def test_fig_lambda_grid_sizes_and_monotone_distance():
    cfgs = _cfgs(
        "fig_lambda_grid",
        "eval.sound=tone:500",
        "eval.lambda_sims=[1.0,0.0]",
        "eval.lambda_ids=[0.0,0.1]",
        "manipulate.steps=6",
        "manipulate.latent_term=l2",
    )
    report = run_table("fig_lambda_grid", cfgs)
    res = _resolution(cfgs[0])
    assert _png_size(report.pngs["fig_lambda_grid.png"]) == (2 * res, 2 * res)
    assert _png_size(report.pngs["fig_lambda_grid_source.png"]) == (res, res)
    cells = {(c["lambda_sim"], c["lambda_id"]): c for c in report.data["cells"]}
    assert set(cells) == {(1.0, 0.0), (1.0, 0.1), (0.0, 0.0), (0.0, 0.1)}
    # a strong λ_sim holds w nearer the source than none
    assert cells[(1.0, 0.0)]["latent_distance"] < cells[(0.0, 0.0)]["latent_distance"]


def test_fig_volume_and_interpolation():
    cfgs = _cfgs("fig_volume", "eval.sound=tone:440", "eval.gains_db=[-6,0,6]")
    report = run_table("fig_volume", cfgs)
    res = _resolution(cfgs[0])
    assert _png_size(report.pngs["fig_volume.png"]) == (4 * res, res)  # source + 3 gains
    cells = report.data["cells"]
    assert [c["gain_db"] for c in cells] == [-6.0, 0.0, 6.0]
    assert cells[1]["cos_to_0db_embedding"] == pytest.approx(1.0, abs=1e-5)

    cfgs = _cfgs("fig_interpolation", "eval.sound=tone:440", "eval.text=a storm", "eval.alphas=[0,0.5,1]")
    report = run_table("fig_interpolation", cfgs)
    assert _png_size(report.pngs["fig_interpolation.png"]) == (4 * res, res)
    assert [c["alpha"] for c in report.data["cells"]] == [0.0, 0.5, 1.0]
    assert "α = 0, 0.5, 1" in report.markdown


def test_queue_edits_equal_direct_edits(tmp_path):
    """The tables' edits go through the edit queue (resumable, torchrun); what they read
    back equals ``edit_attribute`` run directly on the same networks (≤ 1e-5)."""
    from sound2img.evaluation import tables
    from sound2img.evaluation.attribute_edits import edit_attribute

    cfg = _cfgs("supp_table1", "eval.n_latents=3", "eval.batch_size=2", "eval.attributes=[giggling,thunderstorm]")[0]
    cfg = tables.reproduce_config(cfg)
    ctx = tables.TableContext(cfg)
    ctx.work_dir = tmp_path
    edits, n = tables._attribute_edits(ctx, cfg.eval)
    assert n == 3 and [e.attribute.name for e in edits] == ["giggling", "thunderstorm"]
    assert len(list((tmp_path / "edits").glob("*-sound"))) == 6 and (tmp_path / "jobs.jsonl").exists()
    encoder, frontend = ctx.encoder()
    for e, domain in zip(edits, ("faces", "scenes")):
        G, optim, identity = ctx.domain_setup(domain)
        assert (identity is not None) == (domain == "faces")
        direct = edit_attribute(
            e.attribute,
            ctx.sources(G, 3, 0),
            generator=G,
            clip=ctx.clip(),
            encoder=encoder,
            frontend=frontend,
            optim=optim,
            identity=identity,
            batch_size=2,
            device="cpu",
        )
        for field in (
            "ws_source",
            "ws_audio",
            "ws_text",
            "feat_audio",
            "feat_text",
            "cos_audio",
            "cos_text",
            "audio_target",
            "text_target",
        ):
            torch.testing.assert_close(getattr(e, field), getattr(direct, field), atol=1e-5, rtol=0, msg=field)
        assert not torch.allclose(e.ws_audio, e.ws_source)  # the steps moved the latents


def test_edit_queue_resumes_and_refuses_other_settings(tmp_path):
    """A second run reuses the edits on disk (no job is run again, same table); other
    settings in the same directory are refused unless --overwrite."""
    from sound2img.errors import UserInputError
    from sound2img.manipulation.queue import read_ledger

    args = ("eval.n_latents=2", "eval.attributes=[thunderstorm]")
    first = run_table("supp_table1", _cfgs("supp_table1", *args), work_dir=tmp_path)
    assert len(read_ledger(tmp_path / "edits" / "ledger.jsonl")) == 4
    again = run_table("supp_table1", _cfgs("supp_table1", *args), work_dir=tmp_path)
    assert len(read_ledger(tmp_path / "edits" / "ledger.jsonl")) == 4
    assert again.data["ours"] == first.data["ours"]
    with pytest.raises(UserInputError, match="other settings"):
        run_table("supp_table1", _cfgs("supp_table1", *args, "manipulate.lr=0.05"), work_dir=tmp_path)
    run_table("supp_table1", _cfgs("supp_table1", *args, "manipulate.lr=0.05"), work_dir=tmp_path, overwrite=True)
    assert len(read_ledger(tmp_path / "edits" / "ledger.jsonl")) == 8
