"""``precision=auto`` resolves from the hardware (CPU flags and oneDNN's ISA cap, CUDA's
bf16 support, all mocked here so that every branch runs on any machine), explicit values
pass through, bad ones fail in one line, and the suite's pin (tests/conftest.py) keeps
``auto`` at fp32 whatever machine runs the tests."""

from __future__ import annotations

import pytest
import torch

from sound2img.errors import UserInputError
from sound2img.utils import precision as prec


@pytest.fixture
def hardware(monkeypatch):
    """Unpin ``auto`` and let the test choose the CPU's bf16 flags and CUDA's support."""
    monkeypatch.delenv(prec.AUTO_ENV, raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)

    def set_(cpu_flags=(), cuda_bf16=False):
        monkeypatch.setattr(prec, "cpu_bf16_flags", lambda: set(cpu_flags))
        calls = []

        def is_bf16_supported(including_emulation=True):
            calls.append(including_emulation)
            return cuda_bf16

        monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
        return calls

    return set_


@pytest.mark.parametrize(
    "flags, want",
    [({"amx_bf16", "avx512_bf16"}, "bf16"), ({"avx512_bf16"}, "bf16"), ({"amx_bf16"}, "bf16"), (set(), "fp32")],
)
def test_auto_on_a_cpu_follows_its_native_bf16_flags(hardware, flags, want):
    hardware(cpu_flags=flags)
    assert prec.resolve_precision("auto", "cpu") == want
    assert prec.resolve_precision("AUTO", torch.device("cpu")) == want


@pytest.mark.parametrize("isa, want", [("AVX2", "fp32"), ("avx512_core", "fp32"), ("AVX512_CORE_AMX", "bf16")])
def test_auto_respects_a_onednn_cap_below_the_bf16_kernels(hardware, monkeypatch, isa, want):
    hardware(cpu_flags={"amx_bf16", "avx512_bf16"})
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert prec.resolve_precision("auto", "cpu") == want


@pytest.mark.parametrize("supported, want", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda_asks_for_native_bf16_only(hardware, supported, want):
    calls = hardware(cpu_flags=set(), cuda_bf16=supported)
    assert prec.resolve_precision("auto", torch.device("cuda", 0)) == want
    assert calls == [False]  # emulated bf16 (pre-Ampere) does not count


def test_explicit_precisions_ignore_the_hardware(hardware):
    hardware(cpu_flags={"amx_bf16"})
    assert prec.resolve_precision("fp32", "cpu") == "fp32"
    hardware(cpu_flags=set())
    assert prec.resolve_precision("bf16", "cpu") == "bf16"
    assert prec.compute_dtype("bf16") is torch.bfloat16 and prec.compute_dtype("fp32") is torch.float32


def test_the_environment_pins_auto(hardware, monkeypatch):
    hardware(cpu_flags={"amx_bf16"})
    monkeypatch.setenv(prec.AUTO_ENV, "fp32")
    assert prec.resolve_precision("auto", "cpu") == "fp32"
    hardware(cpu_flags=set())
    monkeypatch.setenv(prec.AUTO_ENV, "bf16")
    assert prec.resolve_precision("auto", "cpu") == "bf16"
    assert prec.resolve_precision("fp32", "cpu") == "fp32"  # an explicit choice still wins
    monkeypatch.setenv(prec.AUTO_ENV, "fp16")
    with pytest.raises(UserInputError, match="SOUND2IMG_AUTO_PRECISION must be fp32 or bf16"):
        prec.resolve_precision("auto", "cpu")


@pytest.mark.parametrize("bad", ["fp16", "float32", ""])
def test_unknown_precisions_are_refused_in_one_line(bad):
    with pytest.raises(UserInputError, match="precision must be one of auto, fp32, bf16"):
        prec.resolve_precision(bad, "cpu")


def test_the_suite_runs_auto_as_fp32_on_any_machine():
    assert prec.resolve_precision("auto", "cpu") == "fp32"


def test_the_cpu_probe_names_only_native_bf16_features():
    assert prec.cpu_bf16_flags() <= {"amx_bf16", "avx512_bf16"}


def test_train_amp_auto_follows_the_same_rule_on_a_cpu(hardware):
    from sound2img.training.optimizer import autocast_dtype

    cpu = torch.device("cpu")
    hardware(cpu_flags={"amx_bf16", "avx512_bf16"})
    assert autocast_dtype("auto", cpu) is torch.bfloat16
    assert autocast_dtype("off", cpu) is None
    hardware(cpu_flags=set())
    assert autocast_dtype("auto", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
