"""benchmarks/encoders.py runs end to end (1-s clips, batch 1) and reports its figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import load_file_module

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "encoders.py"


@pytest.mark.slow
def test_encoders_benchmark_smoke(tmp_path, capsys):
    bench = load_file_module(BENCH)
    out = tmp_path / "results.json"
    assert (
        bench.main(
            [
                "--device",
                "cpu",
                "--encoders",
                "resnet18_legacy",
                "wav2clip",
                "--batch-sizes",
                "1",
                "--seconds",
                "1",
                "--repeats",
                "1",
                "--warmup",
                "0",
                "--threads",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    rows = {r["encoder"]: r for r in result["results"]}
    assert set(rows) == {"resnet18_legacy", "wav2clip"}
    assert rows["resnet18_legacy"]["relative"] == 1.0
    w = rows["wav2clip"]
    assert w["relative"] == pytest.approx(w["cpu_ms_per_clip"] / rows["resnet18_legacy"]["cpu_ms_per_clip"])
    assert w["cpu_ms_per_clip"] > 0 and w["threads"] == 1
    assert w["parameters"] > 11_000_000 and w["peak_rss_mib"] >= w["rss_loaded_mib"] > 0
    assert "wav2clip" in capsys.readouterr().out
