"""scripts/report.py on real preset=tiny edits and a training run's metrics.jsonl: one
card per edit with everything embedded, numbers to sort by, plots; bad input refused."""

from __future__ import annotations

import json
import re

import pytest

from sound2img.app.report import build_report, edit_numbers, write_report
from sound2img.errors import UserInputError

from .conftest import ROOT
from .outputs import make_edits, make_run
from helpers import load_file_module


@pytest.fixture(scope="module")
def edits(tmp_path_factory):
    root = tmp_path_factory.mktemp("edits")
    make_edits(root / "tones", "--audio", "tone:440", "--audio", "tone:880", "--seed", "1", "--seed", "2")
    make_edits(root / "mix", "--audio", "tone:300", "--text", "a red sky", "--mode", "layer_mix")
    return root


def test_one_card_per_edit_everything_embedded(edits, tmp_path):
    page = build_report(edits, tmp_path / "r.html")
    cards = re.findall(r'<article class="card" data-name="([^"]+)"', page)
    tones = ["00_seed1_sound-tone440", "01_seed1_sound-tone880", "02_seed2_sound-tone440", "03_seed2_sound-tone880"]
    assert sorted(cards) == ["mix", *(f"tones/{t}" for t in tones)]
    assert page.count('src="data:image/png;base64,') == 5 * 3  # source, result, strip per card
    # five players, three distinct sounds: each stored once in the page, the players refer to it
    players = re.findall(r'<audio controls preload="none" data-sound="(s\d+)"></audio>', page)
    assert len(players) == 5 and sorted(set(players)) == ["s0", "s1", "s2"]
    stored = json.loads(page.split('<script type="application/json" id="sounds">')[1].split("</script>")[0])
    assert sorted(stored) == ["s0", "s1", "s2"] and all(mime == "audio/wav" for mime, _ in stored.values())
    assert page.count(stored["s0"][1]) == 1 and "data:audio" not in page
    by_card = dict(re.findall(r'data-name="([^"]+)".*?data-sound="(s\d+)"', page, flags=re.S))
    assert by_card["tones/00_seed1_sound-tone440"] == by_card["tones/02_seed2_sound-tone440"]
    assert by_card["tones/00_seed1_sound-tone440"] != by_card["tones/01_seed1_sound-tone880"]
    assert "“a red sky”" in page
    # nothing fetched from the network: no absolute URL in any src/href
    assert not re.search(r'(src|href)="(https?:)?//', page)
    m = json.loads((edits / "tones" / "00_seed1_sound-tone440" / "metrics.json").read_text())
    card = page.split('data-name="tones/00_seed1_sound-tone440"')[1].split("</article>")[0]
    assert f'data-m-final-cosine="{m["final_cosine"]!r}"' in card
    assert f'data-m-loss-total="{m["losses"]["total"][-1]!r}"' in card
    # the quality block: its scores sortable, a missing network's score shown with its reason
    assert f'data-m-quality-psnr="{m["quality"]["psnr"]["value"]!r}"' in card
    assert f'data-m-quality-clip-cosine-result="{m["quality"]["clip_cosine_result"]["value"]!r}"' in card
    assert "<th>quality.lpips</th><td>unavailable: preset=tiny downloads nothing" in card


def test_numbers_of_an_edit_and_of_a_mix():
    m = {
        "final_cosine": 0.5,
        "initial_cosine": 0.1,
        "steps": 3,
        "losses": {"total": [3, 2, 1.5]},
        "timings": {"optimise_s": 2.0},
        "config": {"x": 1},
        "layer_mask": [1.0],
        "device": "cpu",
    }
    assert edit_numbers(m) == {
        "final_cosine": 0.5,
        "initial_cosine": 0.1,
        "steps": 3.0,
        "loss.total": 1.5,
        "timings.optimise_s": 2.0,
    }
    assert edit_numbers({"final_cosine": {"sound": 0.2, "text": 0.3}}) == {
        "final_cosine.sound": 0.2,
        "final_cosine.text": 0.3,
    }
    quality = {"psnr": {"value": 21.5}, "lpips": {"value": None, "unavailable": "offline"}, "layer_distance": [0.1]}
    assert edit_numbers({"quality": quality}) == {"quality.psnr": 21.5}


def test_training_run_plots(tmp_path):
    run = make_run(tmp_path / "runs" / "r1")
    page = build_report(run, tmp_path / "r.html")
    assert "training run r1" in page and page.count('alt="training curves"') == 1
    assert "8 records, 8 quantities" in page  # loss, loss_at, loss_av, lr, logit_scale, samples/s, skipped, acc


def test_the_script_writes_once_and_refuses_bad_input(edits, tmp_path, capsys):
    script = load_file_module(ROOT / "scripts" / "report.py")
    out = tmp_path / "report.html"
    assert script.main([str(edits), "--out", str(out)]) == 0
    assert out.read_text().startswith("<!doctype html>")
    assert script.main([str(edits), "--out", str(out)]) == 2  # exists: needs --overwrite
    assert "exists" in capsys.readouterr().err
    assert script.main([str(tmp_path / "nope"), "--out", str(tmp_path / "x.html")]) == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no edits"):
        write_report(tmp_path / "empty", tmp_path / "y.html")
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "y.html").exists()


def test_a_video_gets_a_card_with_its_player_and_contact_sheet(tmp_path):
    """A directory as video.py leaves it (here: a 1-s clip written by its own writer)."""
    import numpy as np
    import torch

    from sound2img.utils.images import contact_sheet_png
    from sound2img.video.render import AUDIO_RATE, VideoWriter

    d = tmp_path / "videos" / "song"
    d.mkdir(parents=True)
    writer = VideoWriter(d / "video.mp4", fps=4, width=32, height=32, crf=18, audio=np.zeros(AUDIO_RATE, np.float32))
    writer.write(np.zeros((4, 32, 32, 3), np.uint8))
    writer.close()
    (d / "contact_sheet.png").write_bytes(contact_sheet_png(torch.zeros(2, 3, 32, 32), ["0.0 s", "1.0 s"]))
    metrics = {
        "video": {"mode": "reactive", "fps": 4, "frames": 4, "duration_s": 1.0},
        "sound": {"spec": "tone:440"},
        "keyframes": [],
        "warnings": ["the sound is silent"],
        "frames_per_s": 50.0,
    }
    (d / "metrics.json").write_text(json.dumps(metrics))
    page = build_report(tmp_path / "videos", tmp_path / "r.html")
    assert "1 videos" in page and "0 other pictures" in page  # the contact sheet belongs to its card
    card = page.split('<article class="video" data-name="song">')[1].split("</article>")[0]
    assert card.count('<video controls preload="metadata" src="data:video/mp4;base64,') == 1
    assert card.count('src="data:image/png;base64,') == 1 and "warning: the sound is silent" in card
