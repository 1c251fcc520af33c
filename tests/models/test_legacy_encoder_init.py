"""The authors started their ResNet-18 from timm 0.5.4's ``resnet18`` ImageNet weights, the
torchvision ones (``resnet18.tv_in1k`` in today's timm, whose plain ``resnet18`` is
``a1_in1k``): ``encoder.pretrained_backbone=tv_in1k`` asks timm for exactly those."""

from __future__ import annotations

import timm

from sound2img import factory
from sound2img.cli import compose


def test_pretrained_tag_reaches_timm(monkeypatch):
    calls = []
    real = timm.create_model

    def record(name, pretrained=False, **kw):
        calls.append((name, pretrained))
        return real(name.split(".")[0], pretrained=False, **kw)  # no download here

    monkeypatch.setattr(timm, "create_model", record)
    cfg = compose("train_encoder", ["experiment=authors_code", "encoder.pretrained_backbone=tv_in1k"])
    encoder, _ = factory.build_encoder_from_cfg(cfg.encoder, cfg.audio)
    assert calls == [("resnet18.tv_in1k", True)] and encoder.arch == "resnet18_legacy"
    assert "pretrained_backbone" not in encoder.arch_kwargs  # a saved encoder never re-downloads
    calls.clear()
    cfg = compose("train_encoder", ["experiment=authors_code"])
    factory.build_encoder_from_cfg(cfg.encoder, cfg.audio)
    assert calls == [("resnet18", False)]
