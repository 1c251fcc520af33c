"""scripts/reproduce.py: two tables run in a subprocess exactly as a user types them
(preset=tiny), the rest of the command line in-process, and docs/reproduce.md in sync."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from sound2img.evaluation.tables import compose_table, list_tables, run_table

from helpers import free_port, load_file_module

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "reproduce.py"


def _load_script():
    return load_file_module(SCRIPT)


def _run(*args, cwd):
    env = {**os.environ, "SOUND2IMG_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


@pytest.mark.slow
def test_zeroshot_subprocess(tmp_path, esc50_root, us8k_root):
    out = tmp_path / "out"
    proc = _run(
        "zeroshot",
        "preset=tiny",
        f"datasets.esc50.root={esc50_root}",
        f"datasets.us8k.root={us8k_root}",
        "progress=false",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    md = (out / "zeroshot.md").read_text()
    assert "| model | ESC-50 | US8K |" in md and "| **this run** |" in md and "preset=tiny" in md
    assert "Audio front end: name=logmel" in md and "random tiny towers" in md
    data = json.loads((out / "zeroshot.json").read_text())
    assert set(data) == {"table", "paper", "ours", "provenance"}
    assert set(data["ours"]) == {"esc50", "us8k"}
    assert set(data["ours"]["us8k"]["per_fold"]) == {str(f) for f in range(1, 11)}
    assert data["ours"]["esc50"]["n"] == 40 and data["provenance"]["tiny"] is True

    # a second run refuses to overwrite, changes nothing, says so in one line
    before = (out / "zeroshot.json").read_bytes()
    proc = _run(
        "zeroshot",
        "preset=tiny",
        f"datasets.esc50.root={esc50_root}",
        f"datasets.us8k.root={us8k_root}",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "already exists" in proc.stderr and "Traceback" not in proc.stderr
    assert (out / "zeroshot.json").read_bytes() == before


@pytest.mark.slow
def test_fig_volume_subprocess(tmp_path):
    out = tmp_path / "figs"
    proc = _run(
        "fig_volume",
        "preset=tiny",
        "eval.sound=tone:440",
        "eval.gains_db=[-6,6]",
        "manipulate.steps=3",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    size = Image.open(io.BytesIO((out / "fig_volume.png").read_bytes())).size
    assert size[0] == 3 * size[1]  # source + two gains, square tiles
    data = json.loads((out / "fig_volume.json").read_text())
    assert [c["gain_db"] for c in data["cells"]] == [-6.0, 6.0]
    md = (out / "fig_volume.md").read_text()
    # the edit tables use the authors' objective: StyleCLIP's CLIP input (manipulate=landscape)
    assert "![volume](fig_volume.png)" in md and "CLIP preprocessing of generator images: styleclip" in md


def test_list_help_and_cfg_job(capsys):
    main = _load_script().main
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in list_tables())
    assert main(["--help"]) == 0
    assert "reproduce.py" in capsys.readouterr().out
    assert main(["supp_table1", "--cfg", "job", "preset=tiny", "eval.n_latents=7"]) == 0
    text = capsys.readouterr().out
    assert "table: supp_table1" in text and "n_latents: 7" in text and "tiny: true" in text


@pytest.mark.parametrize(
    "argv,message",
    [
        (["no_such_table"], "unknown table 'no_such_table'"),
        ([], "name a table"),
        (["zeroshot", "preset=tiny"], "datasets.esc50.root is not set"),
        (["zeroshot", "not-an-override"], "unrecognised argument"),
        (["supp_table1", "preset=tiny", "eval.n_latents=0"], "eval.n_latents must be >= 1"),
        (["zeroshot", "preset=tiny", "datasets.esc50.root=no/such/dir"], "no/such/dir/meta/esc50.csv not found"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, message, capsys, tmp_path):
    main = _load_script().main
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_fig_audio_text_tsne(esc50_root):
    cfgs = compose_table(
        "fig_audio_text_tsne",
        ["preset=tiny", "progress=false", f"datasets.esc50.root={esc50_root}", "eval.folds=[1,2]"],
    )
    report = run_table("fig_audio_text_tsne", cfgs)
    stats = report.data["stats"]
    assert stats["n_audio"] == 16 and stats["n_classes"] == 50
    assert report.data["tsne"]["points"] == 66
    assert Image.open(io.BytesIO(report.pngs["fig_audio_text_tsne.png"])).size == (800, 800)
    assert "folds 1,2: 16 clips" in report.markdown


def test_docs_reproduce_md_is_current():
    """docs/reproduce.md is render_reproduce_doc()'s output: regenerate it with
    ``python -c "from sound2img.evaluation.reproduce_doc import save_reproduce_doc as s; s()"``."""
    from sound2img.evaluation.reproduce_doc import render_reproduce_doc

    assert (ROOT / "docs" / "reproduce.md").read_text() == render_reproduce_doc()


def test_downloads_name_what_each_table_needs():
    from sound2img.evaluation.reproduce_doc import table_requirements

    req = table_requirements("zeroshot", compose_table("zeroshot"))
    assert req.weights == ["soundclip_resnet18", "openai_vit_b32"] and req.datasets == ["esc50", "us8k"]
    req = table_requirements("linear_probe", compose_table("linear_probe"))
    assert req.weights == ["soundclip_resnet18"]
    req = table_requirements("fig_lambda_grid", compose_table("fig_lambda_grid"))
    assert {"rosinality_ffhq1024", "ir_se50", "sample_giggling"} <= set(req.weights)
    req = table_requirements("supp_table1", compose_table("supp_table1"))
    assert {"rosinality_ffhq1024", "rosinality_church256", "ir_se50", "sample_fire"} <= set(req.weights)
    assert req.files == ["data/sounds/nose_blowing.wav", "data/sounds/underwater_bubbling.wav"]
    req = table_requirements("fig_volume", compose_table("fig_volume", ["preset=tiny", "eval.sound=tone:440"]))
    assert req.weights == [] and req.files == []  # the install check needs nothing


def test_linear_probe_table(esc50_root, us8k_root, tmp_path):
    from sound2img.evaluation.report import save_report

    cfgs = compose_table(
        "linear_probe",
        [
            "preset=tiny",
            "progress=false",
            "eval.num_workers=0",
            f"datasets.esc50.root={esc50_root}",
            f"datasets.us8k.root={us8k_root}",
            "+datasets.esc50.num_samples=16000",
            "+datasets.us8k.num_samples=16000",
            "eval.Cs=[0.1,1.0]",
        ],
    )
    report = run_table("linear_probe", cfgs)
    md = save_report(report, tmp_path)[0].read_text()
    assert "| ours, logistic regression on frozen embeddings (paper) | 72.2 | 66.8 |" in md
    assert "| dataset | fold 1 | fold 2 | fold 3 | fold 4 | fold 5 | mean | C |" in md
    for name, n_folds in (("esc50", 5), ("us8k", 10)):
        res = report.data["ours"][name]
        assert len(res["per_fold"]) == n_folds and set(res["C"].values()) <= {0.1, 1.0}
        assert 0.0 <= res["mean"] <= 1.0
    assert "chosen per fold from [0.1, 1.0]" in md


@pytest.mark.slow  # ~1.5 min: torchrun starts two ranks
def test_supp_table1_under_torchrun_equals_one_process(tmp_path):
    """reproduce.py under torchrun (2 gloo ranks) shares the edits out, rank 0 writes the
    table, and its numbers equal those of one process."""
    from omegaconf import OmegaConf

    attrs = "[{name:giggling,domain:faces,sound:'tone:300',text:giggling},{name:wind,domain:scenes,sound:'tone:90',text:wind}]"
    args = [
        "supp_table1",
        "preset=tiny",
        "progress=false",
        "device=cpu",
        "manipulate.steps=2",
        "eval.n_latents=3",
        "eval.batch_size=2",
        f"attributes={attrs}",
    ]
    port = free_port()
    env = {
        **os.environ,
        "SOUND2IMG_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(port),
            str(SCRIPT),
            *args,
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "out" / "supp_table1.json").read_text())
    ledger = [
        json.loads(x)
        for x in (tmp_path / "out" / "supp_table1_edits" / "edits" / "ledger.jsonl").read_text().splitlines()
    ]
    assert len(ledger) == 12 and {r["rank"] for r in ledger} == {0, 1}
    cfgs = compose_table("supp_table1", [a for a in args[1:] if not a.startswith("attributes=")])
    cfgs[0].attributes = OmegaConf.create(
        [
            {"name": "giggling", "domain": "faces", "sound": "tone:300", "text": "giggling"},
            {"name": "wind", "domain": "scenes", "sound": "tone:90", "text": "wind"},
        ]
    )
    one = run_table("supp_table1", cfgs)
    for attr, pairs in one.data["ours"]["attributes"].items():
        for pair, stats in pairs.items():
            got = data["ours"]["attributes"][attr][pair]
            assert got["mean"] == pytest.approx(stats["mean"], abs=1e-6), (attr, pair)
    assert one.data["ours"]["attributes"]["wind"]["w_s,w_a"]["mean"] < 1.0
