"""AudioCLIP's audio head on several channels: each channel runs alone and their pooled
features are summed before ``fc`` (AudioCLIP's ``_forward_reduction``), which is what its
UrbanSound8K reader's two-channel clips go through."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sound2img.audio.frontend import build_frontend
from sound2img.models.audio_encoder import build_audio_encoder


def test_channels_are_summed_before_fc():
    torch.manual_seed(0)
    enc = build_audio_encoder("audioclip", embed_dim=16, layers=(1, 1, 1, 1)).eval()  # one block per stage: fast
    fe = build_frontend("audioclip")
    left, right = torch.randn(2, 6000) * 0.1, torch.randn(2, 6000) * 0.05
    pooled = []
    hook = enc.fc.register_forward_hook(lambda mod, args, out: pooled.append(args[0]))
    with torch.no_grad():
        alone = [enc(fe(w)) for w in (left, right)]  # [2,16] each; fc inputs recorded
        both = enc(fe(torch.stack([left, right], dim=1)))  # wav [B,2,S] → x [B,2,1,S]
    hook.remove()
    assert fe(torch.stack([left, right], dim=1)).shape == (2, 2, 1, 6000)
    torch.testing.assert_close(both, F.linear(pooled[0] + pooled[1], enc.fc.weight, enc.fc.bias))
    assert not torch.allclose(both, (alone[0] + alone[1]) / 2, atol=1e-3)  # not a mean of embeddings
    # a mono clip doubled (their reader's mono files) is the sum of the same features twice
    with torch.no_grad():
        doubled = enc(fe(torch.stack([left, left], dim=1)))
    torch.testing.assert_close(doubled, F.linear(2 * pooled[0], enc.fc.weight, enc.fc.bias))
