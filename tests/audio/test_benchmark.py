"""benchmarks/frontend.py runs end to end (tiny sizes) and reports sane figures."""
from __future__ import annotations

import json
from pathlib import Path
from helpers import load_file_module

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "frontend.py"


def test_frontend_benchmark_smoke(tmp_path, capsys):
    bench = load_file_module(BENCH)
    out = tmp_path / "results.json"
    assert bench.main(["--device", "cpu", "--batch-size", "2", "--seconds", "1", "--repeats", "1", "--warmup", "0",
                       "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    by_name = {r["frontend"]: r for r in result["results"]}
    assert set(by_name) == {"logmel", "soundclip_legacy"}
    for name, tolerance in (("logmel", 1e-4), ("soundclip_legacy", 1e-3)):
        r = by_name[name]
        assert r["max_abs_diff_vs_reference"] <= tolerance
        assert all(v > 0 for v in r["ms_per_clip"].values())
        ratio = r["ms_per_clip"]["reference"] / r["ms_per_clip"]["ours"]
        assert abs(r["speedup_vs_reference"] - ratio) <= 0.01 * ratio + 0.01
    assert result["machine"]["device"] == "cpu"
    assert "logmel" in capsys.readouterr().out
