"""benchmarks/frontend.py runs end to end (tiny sizes): its accuracy column is the real
max |ours − reference|, and its speed columns are the medians of what it timed, checked
with a scripted clock so the expected figures are known without timing anything."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import load_file_module

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "frontend.py"

# Seconds per batch of 2 that the scripted clock reports, per repeat (repeats rotate
# who goes first, so the clock must know who is running, not only the call order).
SCRIPTED = {"reference": [1.0, 0.6, 0.8], "torch_stft": [0.4, 0.5, 0.3], "ours": [0.2, 0.1, 0.3]}


def test_frontend_benchmark_smoke(tmp_path, capsys, monkeypatch):
    """Medians per clip (batch 2): reference 0.8/2 s = 400 ms, torch_stft 0.4/2 = 200 ms,
    ours 0.2/2 = 100 ms, so speed-ups 400/100 = 4.0 and 400/200 = 2.0."""
    bench = load_file_module(BENCH)
    running = []
    real_reference, real_naive = bench._reference_frontend(), bench._naive_mel_power

    def reference(*args, **kwargs):
        running.append("reference")
        return real_reference(*args, **kwargs)

    def naive(*args, **kwargs):
        running.append("torch_stft")
        return real_naive(*args, **kwargs)

    calls = {k: 0 for k in SCRIPTED}

    def scripted_timed(fn, device):
        running.clear()
        fn()
        who = running[0] if running else "ours"
        seconds = SCRIPTED[who][calls[who] % 3]  # the same script for each front end
        calls[who] += 1
        return seconds

    monkeypatch.setattr(bench, "_reference_frontend", lambda: reference)
    monkeypatch.setattr(bench, "_naive_mel_power", naive)
    monkeypatch.setattr(bench, "_timed", scripted_timed)
    out = tmp_path / "results.json"
    assert (
        bench.main(
            [
                "--device",
                "cpu",
                "--batch-size",
                "2",
                "--seconds",
                "1",
                "--repeats",
                "3",
                "--warmup",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    by_name = {r["frontend"]: r for r in result["results"]}
    assert set(by_name) == {"logmel", "soundclip_legacy"}
    for name, tolerance in (("logmel", 1e-4), ("soundclip_legacy", 1e-3)):
        r = by_name[name]
        assert 0 < r["max_abs_diff_vs_reference"] <= tolerance  # a real comparison, not a copy of ours
        assert r["ms_per_clip"] == {"reference": 400.0, "torch_stft": 200.0, "ours": 100.0}
        assert r["speedup_vs_reference"] == 4.0 and r["torch_stft_speedup_vs_reference"] == 2.0
        assert sorted(r["all_ms_per_clip"]["ours"]) == [50.0, 100.0, 150.0]
    assert all(n == 6 for n in calls.values())  # 3 repeats × 2 front ends, each run timed once
    assert result["machine"]["device"] == "cpu"
    assert "logmel" in capsys.readouterr().out
