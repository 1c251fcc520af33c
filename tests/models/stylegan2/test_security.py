"""Nothing in a generator file runs code: pickles whose payload would execute (os.system,
builtins.eval, an embedded module source) are refused or read inertly, and the marker
file they would write never appears; ``.pt`` files go through weights_only."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch

from sound2img.errors import CheckpointError
from sound2img.models.stylegan2 import load_generator

from .conftest import SMALL, small_generator
from .writers import Persistent, ada_kwargs, dumps_snapshot, nvlabs_generator_record


class RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class RunsEval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').write('ran')",))


@pytest.mark.parametrize("payload", [RunsShell, RunsEval], ids=["os.system", "builtins.eval"])
def test_code_running_pickle_is_refused(tmp_path, payload):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": payload(marker)}, protocol=4))
    with pytest.raises(CheckpointError, match="refused global"):
        load_generator(path)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [RunsShell, RunsEval], ids=["os.system", "builtins.eval"])
def test_code_running_pt_is_refused(tmp_path, payload):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}, "latent_avg": payload(marker)}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_generator(path)
    assert not marker.exists()


def test_embedded_module_source_is_never_executed(tmp_path):
    """A well-formed generator pickle whose module_src would write a marker (as NVlabs'
    loader would exec it) loads as data; the source never runs and no NVlabs module
    appears in sys.modules. Checked in a fresh interpreter with an audit hook."""
    marker = tmp_path / "marker"
    src = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
    G = small_generator(seed=2)
    kwargs = ada_kwargs(
        SMALL["resolution"], SMALL["z_dim"], SMALL["w_dim"], SMALL["n_mlp"], SMALL["channel_base"], SMALL["channel_max"]
    )
    record = nvlabs_generator_record({k: v.clone() for k, v in G.state_dict().items()}, kwargs)

    def poison(rec: Persistent):
        rec.module_src = src
        for child in rec.children.values():
            poison(child)

    poison(record)
    path = tmp_path / "poisoned.pkl"
    path.write_bytes(dumps_snapshot(record))
    assert src.encode() in path.read_bytes()
    script = textwrap.dedent(f"""
        import sys
        events = []

        def hook(ev, args):
            # torch compiles a few type annotations lazily; the file's source must never be
            if ev == "compile" and isinstance(args[0], (str, bytes)) and "marker" in str(args[0]):
                events.append(("compile", str(args[0])[:80]))
            elif ev == "exec" and "marker" in str(getattr(args[0], "co_consts", "")):
                events.append(("exec", args[0].co_filename))

        sys.addaudithook(hook)
        from sound2img.models.stylegan2 import load_generator
        events.clear()
        G = load_generator({str(path)!r})
        bad = [m for m in sys.modules if m.split(".")[0] in ("dnnlib", "torch_utils", "training")
               or m.startswith("_imported_module_")]
        assert not bad, bad
        assert not events, events
        compile("x = 'marker'", "<control>", "exec")
        assert events, "positive control: the hook sees source being compiled"
        print("loaded", G.img_resolution, G.info["format"])
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "loaded 32 nvlabs-ada" in out.stdout
    assert not marker.exists()


def test_persistent_meta_of_another_type_is_refused(tmp_path):
    class OddMeta(Persistent):
        def __reduce__(self):
            func, (meta,) = super().__reduce__()
            meta["type"] = "module"
            return func, (meta,)

    path = tmp_path / "odd.pkl"
    path.write_bytes(dumps_snapshot(OddMeta("Generator")))
    with pytest.raises(CheckpointError, match="refused"):
        load_generator(path)
