"""Config groups → models: each group file under configs/ builds what its keys say,
registry names resolve through the weights cache (offline: our one-line message), files
override names, and a checkpoint's own front end wins over the audio config."""

from __future__ import annotations

import warnings

import pytest
import torch
from omegaconf import OmegaConf

from sound2img import factory, weights
from sound2img.audio.frontend import build_frontend
from sound2img.cli import config_dir
from sound2img.errors import UserInputError, WeightsNotAvailableError

TINY_G = {"resolution": 16, "z_dim": 8, "w_dim": 8, "n_mlp": 2, "channel_base": 64, "channel_max": 16, "seed": 3}


@pytest.fixture(autouse=True)
def _offline_cache(tmp_path, monkeypatch):
    """Every test runs offline against an empty cache: nothing is ever fetched."""
    monkeypatch.setenv("SOUND2IMG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SOUND2IMG_OFFLINE", "1")


def _group(group: str, option: str):
    path = config_dir() / group / f"{option}.yaml"
    assert path.is_file(), f"configs/{group}/{option}.yaml is missing"
    return OmegaConf.load(path)


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _frozen(module: torch.nn.Module) -> bool:
    return not module.training and not any(p.requires_grad for p in module.parameters())


# ---------------------------------------------------------------- generator


def test_tiny_generator_is_build_generator_with_the_tiny_kwargs():
    from sound2img.models.stylegan2 import build_generator

    G = factory.build_generator_from_cfg(
        OmegaConf.create({"name": "tiny", "tiny": TINY_G, "truncation": 0.7, "noise_mode": "const"}), "cpu"
    )
    assert _same_state(G, build_generator(**TINY_G)) and _frozen(G)
    assert not _same_state(G, build_generator(**{**TINY_G, "seed": 4})), "the seed must reach build_generator"


def test_tiny_generator_config_file():
    gcfg = _group("generator", "tiny")
    G = factory.build_generator_from_cfg(gcfg, "cpu")
    assert G.img_resolution == gcfg.tiny.resolution and _frozen(G)


def test_generator_path_overrides_name_and_registry_names_use_the_cache(tmp_path):
    from sound2img.models.stylegan2 import build_generator, save_generator

    G0 = build_generator(**TINY_G)
    own = save_generator(G0, tmp_path / "mine.pt", format="rosinality")
    # name is a registry entry that is not cached: with path set it is never looked up
    G = factory.build_generator_from_cfg({"name": "nvlabs_ffhq1024", "path": str(own)}, "cpu")
    assert _same_state(G, G0)

    entry = weights.get_entry("soundclip_landscape")
    with pytest.raises(WeightsNotAvailableError) as info:
        factory.build_generator_from_cfg({"name": "soundclip_landscape"}, "cpu")
    cached = weights.cached_path(entry)
    assert entry.url in str(info.value) and str(cached) in str(info.value) and "\n" not in str(info.value)
    cached.parent.mkdir(parents=True)
    own.rename(cached)  # as if fetched: the same name now loads the cached file
    assert _same_state(factory.build_generator_from_cfg({"name": "soundclip_landscape"}, "cpu"), G0)


def test_generator_config_errors():
    with pytest.raises(UserInputError, match="not a StyleGAN2 generator"):
        factory.build_generator_from_cfg({"name": "ir_se50"}, "cpu")
    with pytest.raises(UserInputError, match="rosinality_ffhq1024"):
        factory.build_generator_from_cfg({"name": "rosinality_ffhq"}, "cpu")
    # noise_mode and truncation are checked at composition (tests/test_config_schema.py)
    with pytest.raises(UserInputError, match="resolution"):
        factory.build_generator_from_cfg({"name": "tiny", "tiny": {}}, "cpu")
    with pytest.raises(UserInputError, match="generator.tiny"):
        factory.build_generator_from_cfg({"name": "tiny", "tiny": {**TINY_G, "wings": 2}}, "cpu")


# ---------------------------------------------------------------- CLIP


def test_tiny_clip_config_file_is_build_clip_with_its_kwargs():
    from sound2img.models.clip import build_clip

    ccfg = _group("clip", "tiny")
    towers = factory.build_clip_from_cfg(ccfg, "cpu")
    expected = build_clip("tiny", seed=int(ccfg.seed), preprocess=ccfg.preprocess, **ccfg.tiny)
    assert _same_state(towers, expected) and _frozen(towers.model)
    assert towers.spec()["tiny"]["embed_dim"] == ccfg.tiny.embed_dim
    other = factory.build_clip_from_cfg(OmegaConf.merge(ccfg, {"seed": 1, "preprocess": "styleclip"}), "cpu")
    assert not _same_state(towers, other) and other.preprocess_mode == "styleclip"


def test_openai_vit_b32_offline_names_the_registry_file(monkeypatch):
    import sound2img.models.clip as clip_module

    def not_in_open_clip_cache(*args, **kwargs):  # as on a machine where open_clip never downloaded it
        raise WeightsNotAvailableError("not in open_clip's cache")

    monkeypatch.setattr(clip_module, "find_cached_clip_weights", not_in_open_clip_cache)
    entry = weights.get_entry("openai_vit_b32")
    with pytest.raises(WeightsNotAvailableError) as info:
        factory.build_clip_from_cfg(_group("clip", "vit_b32"), "cpu")
    msg = str(info.value)
    assert entry.url in msg and str(weights.cached_path(entry)) in msg and "\n" not in msg


def test_registry_clip_file_is_loaded_with_quickgelu(monkeypatch, tmp_path):
    import sound2img.models.clip as clip_module

    calls = []

    def stand_in_load_clip(*args, **kwargs):
        if args[1] == "openai":  # as on a machine where open_clip never downloaded it
            raise WeightsNotAvailableError("not in open_clip's cache")
        calls.append((args, kwargs))
        return "towers"

    monkeypatch.setattr(clip_module, "load_clip", stand_in_load_clip)
    cached = weights.cached_path(weights.get_entry("openai_vit_b32"))
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"stand-in")  # only its path matters to the stand-in loader
    assert (
        factory.build_clip_from_cfg({"model": "ViT-B-32", "pretrained": "openai", "preprocess": "styleclip"}, "cpu")
        == "towers"
    )
    (model, path, device), kwargs = calls[-1]
    assert (model, path, str(device)) == ("ViT-B-32", str(cached), "cpu")
    assert kwargs == {"preprocess": "styleclip", "quick_gelu": True}
    # a local file or an open_clip tag goes to load_clip unchanged
    factory.build_clip_from_cfg({"model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"}, "cpu")
    assert calls[-1][0][:2] == ("ViT-B-32", "laion2b_s34b_b79k") and "quick_gelu" not in calls[-1][1]
    with pytest.raises(UserInputError, match="not a CLIP weight file"):
        factory.build_clip_from_cfg({"model": "ViT-B-32", "pretrained": "ir_se50"}, "cpu")


# ---------------------------------------------------------------- identity network


def test_arcface_tiny_file_and_registry(tmp_path):
    from sound2img.models.arcface import IdentityLoss, build_arcface

    loss = factory.build_arcface_from_cfg("tiny", "cpu")
    assert isinstance(loss, IdentityLoss) and _frozen(loss.arcface)
    net = build_arcface("tiny", seed=5)
    torch.save(net.state_dict(), tmp_path / "ir.pth")
    loaded = factory.build_arcface_from_cfg({"path": str(tmp_path / "ir.pth")}, "cpu")
    assert _same_state(loaded.arcface, net)
    entry = weights.get_entry("ir_se50")
    with pytest.raises(WeightsNotAvailableError, match="model_ir_se50.pth") as info:
        factory.build_arcface_from_cfg({}, "cpu")
    assert entry.url in str(info.value)
    with pytest.raises(UserInputError, match="not an ArcFace"):
        factory.build_arcface_from_cfg("soundclip_landscape", "cpu")


# ---------------------------------------------------------------- audio encoder + front end


def test_random_encoder_from_config_files():
    ecfg, acfg = _group("encoder", "tiny"), _group("audio", "logmel")
    enc, fe = factory.build_encoder_from_cfg(OmegaConf.merge(ecfg, {"seed": 0}), acfg, "cpu")
    assert enc.embed_dim == ecfg.embed_dim and enc.arch == ecfg.arch
    assert fe.spec()["name"] == acfg.name
    enc2, _ = factory.build_encoder_from_cfg(OmegaConf.merge(ecfg, {"seed": 0}), acfg, "cpu")
    assert _same_state(enc, enc2), "seed must make the random init reproducible"
    wav = torch.randn(2, int(fe.spec().get("sample_rate", 16000)))
    with torch.no_grad():
        emb = enc.encode_audio(fe(wav))
    assert emb.shape == (2, ecfg.embed_dim)


def test_checkpoint_front_end_wins_over_the_audio_config(tmp_path):
    from sound2img.models.audio_encoder import build_audio_encoder, save_audio_encoder

    acfg = OmegaConf.create({"name": "logmel", "num_frames": 64})
    stored = build_frontend("logmel", num_frames=64)
    enc0 = build_audio_encoder("tiny_cnn", embed_dim=32)
    path = save_audio_encoder(tmp_path / "enc.safetensors", enc0, stored.spec())

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same front end: no warning
        enc, fe = factory.build_encoder_from_cfg({"arch": "tiny_cnn", "path": str(path)}, acfg, "cpu")
    assert _same_state(enc, enc0) and _frozen(enc) and fe.spec() == stored.spec()

    other = build_frontend("soundclip_legacy")
    assert other.spec() != stored.spec()
    with pytest.warns(UserWarning, match="keeping the encoder's own front end"):
        enc, fe = factory.build_encoder_from_cfg({"path": str(path)}, other.spec(), "cpu")
    assert fe.spec() == stored.spec()


def test_encoder_registry_name_offline_and_wrong_kind():
    entry = weights.get_entry("soundclip_resnet18")
    ecfg = _group("encoder", "soundclip_resnet18")
    with pytest.raises(WeightsNotAvailableError) as info:
        factory.build_encoder_from_cfg(ecfg, None, "cpu")
    assert entry.url in str(info.value) and str(weights.cached_path(entry)) in str(info.value)
    with pytest.raises(UserInputError, match="not an audio encoder"):
        factory.build_encoder_from_cfg({"path": "sample_rain"}, None, "cpu")
    with pytest.raises(UserInputError, match="encoder.arch"):
        factory.build_encoder_from_cfg({"path": None}, {"name": "logmel"}, "cpu")


# ---------------------------------------------------------------- composed top-level configs


@pytest.mark.parametrize("config_name", ["manipulate", "train_encoder", "reproduce"])
def test_preset_tiny_builds_every_model_group(config_name):
    from sound2img.cli import compose

    cfg = compose(config_name, ["preset=tiny"])
    G = factory.build_generator_from_cfg(cfg.generator, "cpu")
    towers = factory.build_clip_from_cfg(cfg.clip, "cpu")
    enc, fe = factory.build_encoder_from_cfg(cfg.encoder, cfg.audio, "cpu")
    assert enc.embed_dim == towers.embed_dim, "preset=tiny must align the encoder with CLIP"
    img = G.synthesis(G.mapping(torch.randn(1, G.z_dim)), noise_mode="const")
    assert towers.encode_image(img).shape == (1, towers.embed_dim)


@pytest.mark.parametrize("option", sorted(p.stem for p in (config_dir() / "generator").glob("*.yaml")))
def test_every_generator_config_names_a_generator(option):
    """Each generator config either builds offline (tiny) or names a registered generator
    file whose absence gives the registry's message (never an unknown-name error)."""
    gcfg = _group("generator", option)
    if gcfg.name == "tiny":
        assert factory.build_generator_from_cfg(gcfg, "cpu").img_resolution == gcfg.tiny.resolution
        return
    entry = weights.get_entry(gcfg.name)
    assert entry.format in factory.GENERATOR_FORMATS
    with pytest.raises(WeightsNotAvailableError, match=entry.filename):
        factory.build_generator_from_cfg(gcfg, "cpu")


@pytest.mark.parametrize("option", sorted(p.stem for p in (config_dir() / "encoder").glob("*.yaml")))
def test_every_encoder_config_builds_or_names_its_checkpoint(option):
    ecfg = _group("encoder", option)
    if ecfg.path is None:
        enc, fe = factory.build_encoder_from_cfg(ecfg, _group("audio", "logmel"), "cpu")
        assert enc.embed_dim == ecfg.embed_dim and enc.arch == ecfg.arch
        return
    entry = weights.get_entry(ecfg.path)
    with pytest.raises(WeightsNotAvailableError, match=entry.filename):
        factory.build_encoder_from_cfg(ecfg, _group("audio", "soundclip_legacy"), "cpu")


# ---------------------------------------------------------------- the one cache of networks


def test_networks_build_each_network_once(monkeypatch):
    """One copy per network: the same group (dict, DictConfig or the schema's dataclass)
    shares it, a run-time setting (truncation) does not make another, another seed does."""
    built = []
    real = factory.build_generator_from_cfg
    monkeypatch.setattr(factory, "build_generator_from_cfg", lambda g, d: built.append(g) or real(g, d))
    nets = factory.Networks("cpu")
    group = {"name": "tiny", "tiny": TINY_G, "truncation": 0.7}
    G = nets.generator(group)
    assert nets.generator(OmegaConf.create({**group, "truncation": 0.5})) is G
    assert nets.generator(factory._generator_options(group)) is G
    other = nets.generator({"name": "tiny", "tiny": {**TINY_G, "seed": 4}})
    assert other is not G and len(built) == 2 and nets.device == torch.device("cpu")


def test_networks_keep_a_failure_when_asked(monkeypatch):
    """``keep_failures``: a network that failed to build fails again with the same error,
    without a second attempt (the edit queue); by default the next request tries again."""
    calls = []

    def failing(g, d):
        calls.append(g)
        raise UserInputError("no such generator here")

    monkeypatch.setattr(factory, "build_generator_from_cfg", failing)
    for keep, attempts in ((True, 1), (False, 2)):
        calls.clear()
        nets = factory.Networks("cpu", keep_failures=keep)
        for _ in range(2):
            with pytest.raises(UserInputError, match="no such generator here"):
                nets.generator({"name": "anything"})
        assert len(calls) == attempts


def test_networks_check_shared_towers_against_each_encoder(monkeypatch):
    """Towers are built once and checked against every encoder they are asked for with:
    an encoder of another CLIP space is refused in one line, one of the same space is not."""

    class Towers:
        def spec(self):
            return {"space": "openai/ViT-B-32"}

    class Encoder:
        arch = "stub"

        def __init__(self, space):
            self.clip_spec = {"space": space}

    built = []
    monkeypatch.setattr(factory, "build_clip_from_cfg", lambda c, d: built.append(c) or Towers())
    nets = factory.Networks("cpu")
    towers = nets.clip({"model": "ViT-B-32", "pretrained": "openai"}, Encoder("openai/ViT-B-32"))
    with pytest.raises(UserInputError, match="embeds into CLIP space laion/ViT-B-32"):
        nets.clip({"model": "ViT-B-32", "pretrained": "openai"}, Encoder("laion/ViT-B-32"))
    assert nets.clip({"model": "ViT-B-32", "pretrained": "openai"}) is towers and len(built) == 1


# ---------------------------------------------------------------- datasets


def test_training_sets_from_the_tiny_config():
    """``preset=tiny``'s synthetic set at the front end's rate; the held-out split is the
    reader's test split, centre-cropped, without frames, the plain prompt set."""
    from sound2img.cli import compose, to_object
    from sound2img.training.run import effective_config

    cfg = to_object(effective_config(compose("train_encoder", ["preset=tiny", "+tiny_run.data.crop=random"])))
    train, val = factory.build_training_sets(cfg, 8000, need_images=True)
    assert (train.sample_rate, train.num_samples, train.crop, train.load_images) == (8000, 16000, "random", True)
    assert (val.crop, val.load_images, val.text_augment) == ("center", False, False)
    assert {r.key for r in train.records}.isdisjoint(r.key for r in val.records)  # split=test: other clips
    train, _ = factory.build_training_sets(cfg, 8000, need_images=False)
    assert not train.load_images
    cfg.validation.data = None
    assert factory.build_training_sets(cfg, 8000, need_images=False)[1] is None
