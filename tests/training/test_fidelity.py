"""Training reproduces what it says: the paper's summed directions, the authors' released
recipe (experiment=authors_code) and its pieces, and contrastive logits in fp32 under
autocast."""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from sound2img.cli import compose
from sound2img.config import OptimOptions
from sound2img.training.losses import ContrastiveLoss, LogitScale, info_nce
from sound2img.training.optimizer import build_scheduler
from sound2img.training.run import effective_config
from sound2img.training.step import ContrastiveModel, make_views

from helpers.training import OPTIM, TRAIN, loss_options


def _unit(n, d, seed):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


@pytest.mark.parametrize("scale", [100.0, 1 / 0.07])
def test_logits_are_fp32_under_bf16_autocast(scale):
    a, b = _unit(256, 64, 0), _unit(256, 64, 1)
    full = info_nce(a, b, torch.tensor(scale))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = info_nce(a, b, torch.tensor(scale))
    assert mixed.dtype == torch.float32
    assert abs(float(mixed) - float(full)) <= 1e-6 * abs(float(full))


def test_sum_of_directions_is_twice_the_mean():
    a, b = _unit(16, 8, 2), _unit(16, 8, 3)
    mean = info_nce(a, b, 5.0)
    total = info_nce(a, b, 5.0, directions="sum")
    one_way = info_nce(a, b, 5.0, symmetric=False)
    torch.testing.assert_close(total, 2 * mean)
    torch.testing.assert_close(info_nce(a, b, 5.0, symmetric=False, directions="sum"), one_way)


def test_paper_experiment_sums_the_directions():
    cfg = effective_config(compose("train_encoder", ["experiment=paper"]))
    assert cfg.loss.directions == "sum" and cfg.loss.symmetric
    assert compose("train_encoder", []).loss.directions == "mean"


def test_authors_code_composes_to_the_released_recipe():
    cfg = effective_config(compose("train_encoder", ["experiment=authors_code"]))
    assert cfg.train.batch_size == 320 and cfg.train.epochs == 50 and cfg.train.amp == "off"
    assert cfg.train.clean_first_view and cfg.train.separate_view_passes
    o = cfg.optim
    assert (o.name, o.lr, o.momentum, o.weight_decay) == ("sgd", 1e-3, 0.9, 5e-4)
    assert (o.schedule, o.max_lr, o.step_epochs, o.base_momentum) == ("cyclic", 0.1, 5, 0.8)
    assert cfg.loss.logit_scale == "legacy" and cfg.loss.directions == "mean" and cfg.loss.symmetric
    assert dict(cfg.loss.terms) == {"at": 0.5, "av": 0.0, "aa": 0.5}
    for d in (cfg.data, *cfg.extra_data.values()):
        assert list(d.templates) == ["{}"] and d.text_augment
    # each of their readers' EDA: VGGSound sr, rs, ri; both AudioSet readers sr, rs
    assert list(cfg.data.eda_chain) == ["sr", "rs", "ri"]
    assert [list(d.eda_chain) for d in cfg.extra_data.values()] == [["sr", "rs"], ["sr", "rs"]]
    assert cfg.data.name == "vggsound" and set(cfg.extra_data) == {"audioset_balanced", "audioset_unbalanced"}
    assert cfg.audio.name == "soundclip_legacy" and cfg.encoder.arch == "resnet18_legacy"
    assert cfg.encoder.path is None and cfg.augment.max_gain_db == 0.0 and cfg.augment.mask_value == 0.0


def test_authors_loss_value():
    """Their loss: (CE(P) + CE(Pᵀ) + CE(Q) + CE(Qᵀ)) / 4 with P = a·tᵀ·e^0.07, Q = a·âᵀ·e^0.07."""
    a, t, v = _unit(12, 8, 4), _unit(12, 8, 5), _unit(12, 8, 6)
    loss = ContrastiveLoss({"at": 0.5, "av": 0.0, "aa": 0.5}, scale=LogitScale("legacy"))(a, text=t, audio_view=v)
    p, q, y = a @ t.T * math.exp(0.07), a @ v.T * math.exp(0.07), torch.arange(12)
    theirs = (F.cross_entropy(p, y) + F.cross_entropy(p.T, y) + F.cross_entropy(q, y) + F.cross_entropy(q.T, y)) / 4
    torch.testing.assert_close(loss["loss"], theirs)


def test_cyclic_schedule_is_their_per_epoch_cyclic_lr():
    """CyclicLR(base 1e-3, max 0.1, step_size_up 5, triangular) stepped once per epoch:
    1e-3 at epoch 0, 0.1 at epoch 5, 1e-3 again at 10; momentum 0.9 → 0.8 inversely."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1e-3, momentum=0.9)
    o = OptimOptions(
        name="sgd",
        lr=1e-3,
        momentum=0.9,
        weight_decay=0.0,
        lr_cycle_epochs=10,
        lr_min=0.0,
        warmup_steps=0,
        schedule="cyclic",
        max_lr=0.1,
        step_epochs=5,
        base_momentum=0.8,
    )
    sched, per_step = build_scheduler(opt, o, steps_per_epoch=7)
    assert not per_step
    lrs, moms = [], []
    for _ in range(11):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    expected = [1e-3 + 0.099 * (1 - abs(e / 5 - 1)) if e <= 10 else None for e in range(11)]
    assert lrs == pytest.approx(expected)
    assert moms[0] == pytest.approx(0.9) and moms[5] == pytest.approx(0.8) and moms[10] == pytest.approx(0.9)


def test_the_loop_moves_the_cyclic_schedule_once_per_epoch(tiny_task, tmp_path):
    """optim=authors_cyclic inside the loop: every step of an epoch logs that epoch's lr,
    base 1e-3, then the peak 0.1, then the base again (step_epochs=1): CyclicLR is stepped
    at each epoch's end and never inside one."""
    from sound2img.training.loop import training_loop
    from sound2img.training.metrics import read_metrics

    optim = replace(OPTIM, schedule="cyclic", lr=1e-3, max_lr=0.1, step_epochs=1, base_momentum=0.8)
    train = replace(TRAIN, batch_size=16, epochs=3, log_every=1)
    data = tiny_task.dataset("train", num_per_class=4)  # 32 clips: 2 steps per epoch
    training_loop(
        tmp_path, tiny_task.encoder(), tiny_task.frontend(), data, loss=loss_options(aa=1.0), optim=optim, train=train
    )
    lrs: dict[int, set[float]] = {}
    for r in read_metrics(tmp_path):
        if "lr" in r:
            lrs.setdefault(r["epoch"], set()).add(round(r["lr"], 9))
    assert lrs == {0: {0.001}, 1: {0.1}, 2: {0.001}}


class _Mask:
    """Stand-in augmentation: no gain, the spectrogram halved (easy to recognise)."""

    min_gain_db = max_gain_db = 0

    def wave(self, wav, generator):
        return wav

    def mel(self, spec, generator):
        return spec * 0.5


def test_clean_first_view(tiny_task):
    fe = tiny_task.frontend()
    wav = torch.randn(3, 8000, generator=torch.Generator().manual_seed(0))
    clean, aug = make_views(wav, fe, _Mask(), 2, torch.Generator().manual_seed(1), clean_first=True)
    torch.testing.assert_close(clean, fe(wav))
    torch.testing.assert_close(aug, fe.to_encoder_input(fe.spectrogram(wav) * 0.5))
    both = make_views(wav, fe, _Mask(), 2, torch.Generator().manual_seed(1))
    assert not torch.allclose(both[0], fe(wav))  # the default augments both views


def test_separate_passes_keep_per_view_batchnorm_statistics(tiny_task):
    enc = tiny_task.encoder().train()
    loss = ContrastiveLoss({"aa": 1.0})
    fe = tiny_task.frontend()
    wav = torch.randn(4, 8000, generator=torch.Generator().manual_seed(0))
    views = [fe(wav), fe(wav) * 0.3 + 1.0]
    seen = []
    enc.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    ContrastiveModel(enc, loss, separate_passes=True)(views)
    alone = [F.normalize(enc(v).float(), dim=-1) for v in views]
    torch.testing.assert_close(F.normalize(seen[0].float(), dim=-1), alone[0])
    torch.testing.assert_close(F.normalize(seen[1].float(), dim=-1), alone[1])
    seen.clear()
    ContrastiveModel(enc, loss)(views)  # one pass over both: statistics over the 8 mixed rows
    joint = F.normalize(seen[0].float(), dim=-1)[:4]
    assert not torch.allclose(joint, alone[0], atol=1e-4)


# The label of the EDA tests and its synonyms in the built-in table (sound2img/data/prompts.py).
EDA_GROUPS = ({"dog", "canine", "hound", "pooch"}, {"barking", "yapping", "woofing"})


def _syn(word: str) -> set[str]:
    return next((g - {word} for g in EDA_GROUPS if word in g), set())


def _eda_texts(tiny_task, monkeypatch, **kw) -> list[list[str]]:
    """``make_text`` on the label "dog barking" with rng seeds 0..59, as word lists."""
    from sound2img.data import prompts

    monkeypatch.setattr(prompts, "_wordnet", lambda: None)  # the built-in table, wherever nltk is installed
    ds = tiny_task.dataset(templates=["{}"], text_augment=True, **kw)
    rec = dataclasses.replace(ds.records[0], class_name="dog barking", prompt_name=None, text=None)
    return [ds.make_text(rec, random.Random(seed)).split() for seed in range(60)]


def test_eda_chain_applies_the_three_operations_in_turn(tiny_task, monkeypatch):
    """The authors' reader (their textaugment 1.3.4 ``EDA``: ``synonym_replacement``,
    ``random_swap``, ``random_insertion``, one word each, in that order) on "dog barking",
    worked out by hand:
      sr: "S barking" (S a synonym of dog) or "dog T" (T a synonym of barking);
      rs: the only two words swapped: "barking S" or "T dog";
      ri: a synonym of one of those two inserted somewhere.
    So every result is three words; dropping the inserted one leaves "barking S" or
    "T dog". Insertion before the swap would leave the pair unswapped for some seeds, a
    replacement after the insertion could hit the inserted word, and a missing step changes
    the length or the pair."""
    swapped = {("barking", s) for s in _syn("dog")} | {(t, "dog") for t in _syn("barking")}
    for words in _eda_texts(tiny_task, monkeypatch, eda_chain=True):
        assert len(words) == 3, words
        assert any(
            pair in swapped and words[k] in _syn(pair[0]) | _syn(pair[1])
            for k in range(3)
            for pair in [tuple(words[:k] + words[k + 1 :])]
        ), words


def test_eda_without_the_chain_applies_one_drawn_operation(tiny_task, monkeypatch):
    """One of sr, ri, rs per prompt (the EDA paper's use), each seen over 60 seeds: "S
    barking" / "dog T" (sr), "barking dog" (rs), or "dog barking" with a synonym of either
    word inserted (ri)."""
    seen = set()
    for words in _eda_texts(tiny_task, monkeypatch):
        if words == ["barking", "dog"]:
            seen.add("rs")
        elif len(words) == 2 and (
            (words[0] in _syn("dog") and words[1] == "barking") or (words[0] == "dog" and words[1] in _syn("barking"))
        ):
            seen.add("sr")
        else:
            assert len(words) == 3, words
            rest = [[w for j, w in enumerate(words) if j != k] for k in range(3)]
            assert any(
                r == ["dog", "barking"] and words[k] in _syn("dog") | _syn("barking") for k, r in enumerate(rest)
            ), words
            seen.add("ri")
    assert seen == {"sr", "rs", "ri"}


def test_eda_chain_of_the_audioset_readers_is_two_operations(tiny_task, monkeypatch):
    """eda_chain: [sr, rs] (their AudioSet readers) on "dog barking", worked out by hand:
    sr gives "S barking" or "dog T", rs swaps the only two words, so every result is
    "barking S" or "T dog" (two words: no insertion). A chain name that is not an EDA
    operation is refused."""
    swapped = {("barking", s) for s in _syn("dog")} | {(t, "dog") for t in _syn("barking")}
    for words in _eda_texts(tiny_task, monkeypatch, eda_chain=["sr", "rs"]):
        assert tuple(words) in swapped, words
    from sound2img.data.base import DatasetError

    with pytest.raises(DatasetError, match="eda_chain"):
        tiny_task.dataset(text_augment=True, eda_chain=["sr", "swap"])
