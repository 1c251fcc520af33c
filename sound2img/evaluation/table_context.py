"""The networks, sources, optimiser settings and datasets of one composed ``reproduce``
config, built lazily for the table runners (``evaluation.tables``), with the provenance of
what was used."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from sound2img.cli import to_plain
from sound2img.errors import UserInputError
from sound2img.manipulation.optimizer import optimizer_kwargs
from sound2img.utils.device import resolve_device


class TableContext:
    """Networks built lazily from one composed config (each at most once) and the
    provenance of what was used."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.c = to_plain(cfg)
        self.tiny = bool(self.c.get("tiny", False))
        self.device = resolve_device(self.c.get("device") or "auto")
        self.progress = bool(self.c.get("progress", False))
        self._cache: dict[str, Any] = {}
        self.weights: dict[str, str] = {}
        self.work_dir: Path | None = None  # where edit-queue tables keep their edits
        self.overwrite = False

    def _once(self, key: str, build: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def encoder(self):
        """``(encoder, frontend)`` from ``cfg.encoder`` and ``cfg.audio``."""
        from sound2img import factory

        def build():
            enc, fe = factory.build_encoder_from_cfg(self.cfg.encoder, self.cfg.audio, self.device)
            self.weights["audio encoder"] = self._describe(
                self.c["encoder"].get("path"), f"random {self.c['encoder'].get('arch')}"
            )
            return enc, fe

        return self._once("encoder", build)

    def clip(self):
        from sound2img import factory

        def build():
            # towers in the audio encoder's CLIP space: from_encoder picks them, others are checked
            encoder = self._cache.get("encoder", (None,))[0]
            if encoder is None and self.c.get("clip", {}).get("model") == "from_encoder":
                encoder = self.encoder()[0]
            clip = factory.build_clip_for_encoder(self.cfg.clip, encoder, self.device)
            spec = clip.spec()
            sha = spec.get("sha256")
            self.weights["CLIP"] = (
                f"{spec.get('model_name')} / {spec.get('pretrained')} (sha256 {sha[:12]}…)"
                if sha
                else f"random {spec.get('model_name')} towers (seed {spec.get('seed')}), no file"
            )
            return clip

        return self._once("clip", build)

    def generator(self, domain: dict[str, Any]):
        """The generator of a domain (``generator``: a registry name or file), or
        ``cfg.generator`` when the domain names none or under ``preset=tiny``."""
        from sound2img import factory

        name = None if self.tiny else domain.get("generator")
        if name is None:
            g = self.c["generator"]
            return self._once(
                "generator:cfg",
                lambda: self._note_generator(
                    factory.build_generator_from_cfg(self.cfg.generator, self.device),
                    g.get("path") or (None if g.get("name") == "tiny" else g.get("name")),
                    "cfg.generator",
                ),
            )
        return self._once(
            f"generator:{name}",
            lambda: self._note_generator(factory.build_generator_from_cfg({"name": name}, self.device), name, name),
        )

    def _note_generator(self, G, source, label):
        self.weights[f"generator ({label})"] = self._describe(source, f"random tiny generator {G.img_resolution}px")
        return G

    def identity(self):
        from sound2img import factory

        spec = self.c.get("identity") or ("tiny" if self.tiny else "ir_se50")

        def build():
            self.weights["identity (IR-SE50)"] = self._describe(None if spec == "tiny" else spec, "random tiny IR-SE")
            return factory.build_arcface_from_cfg(spec, self.device)

        return self._once("identity", build)

    @staticmethod
    def _describe(source: str | None, random_label: str) -> str:
        """``file (sha256 abcdef123456…)`` for weights, or the random network's label."""
        if not source:
            return random_label
        from sound2img.utils.files import sha256_file
        from sound2img.weights import resolve_weights

        path = resolve_weights(str(source), allow_download=False)
        return f"{Path(path).name} (sha256 {sha256_file(path)[:12]}…)"

    def domain_optim(self, domain_name: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(domain, optimiser kwargs)`` for a domain of ``cfg.domains`` (its generator and
        λ values) or, for ``None``, the base config's; nothing is built."""
        domains = self.c.get("domains") or {}
        if domain_name is not None and domain_name not in domains:
            raise UserInputError(f"unknown domain {domain_name!r}; configured: {', '.join(domains) or 'none'}")
        domain = dict(domains.get(domain_name) or {})
        optim = optimizer_kwargs(
            {**self.c["manipulate"], **{k: domain[k] for k in ("lambda_sim", "lambda_id") if domain.get(k) is not None}}
        )
        optim["noise_mode"] = str(self.c["generator"].get("noise_mode") or "const")
        return domain, optim

    def domain_setup(self, domain_name: str | None) -> tuple[Any, dict[str, Any], Any]:
        """``(generator, optimiser kwargs, identity or None)`` of ``domain_optim``'s domain."""
        domain, optim = self.domain_optim(domain_name)
        identity = self.identity() if optim["lambda_id"] > 0 else None
        return self.generator(domain), optim, identity

    def sources(self, G, n: int, seed: int) -> torch.Tensor:
        """``n`` source latents from seeds ``seed, seed+1, …`` truncated by
        ``manipulate.truncation``: ws [n,num_ws,w_dim]."""
        from sound2img.models.stylegan2 import sample_source_latents

        if n < 1:
            raise UserInputError(f"the number of source latents must be >= 1, got {n}")
        trunc = float(self.c["manipulate"].get("truncation", 0.7))
        # one seed at a time, as manipulate.py and the edit queue map a seed: the mapping
        # network's float sums depend on the batch, and Adam magnifies such differences
        return torch.cat([sample_source_latents(G, [s], trunc, self.device) for s in range(seed, seed + n)])

    def provenance(self, images: bool = True) -> dict[str, Any]:
        """What was used: weights, front end, device and (``images``: the table scores
        generator images) CLIP's preprocessing of them."""
        prov: dict[str, Any] = {"tiny": self.tiny, "device": str(self.device), "weights": dict(self.weights)}
        if images:  # the edits' compute precision (optimize_latents resolves "auto" the same way)
            from sound2img.utils.precision import resolve_precision

            prov["precision"] = resolve_precision(
                (self.c.get("manipulate") or {}).get("precision", "auto"), self.device
            )
        if "encoder" in self._cache:
            prov["frontend"] = _describe_spec(self._cache["encoder"][1].spec())
        if images and "clip" in self._cache:
            clip = self._cache["clip"]
            prov["clip_preprocess"] = f"{clip.preprocess_mode} (input {clip.image_size[0]} px)"
        return prov

    def dataset_specs(self, names: Sequence[str], folds: Sequence[int] | None = None):
        """``cfg.datasets.<name>`` (a ``configs/data`` entry: ``root``, ``folds`` and reader
        arguments) → ``DatasetSpec``s; ``folds`` overrides the configured ones. Each dataset's
        metadata is read once here, so a wrong root fails before any network is built."""
        from sound2img.data import build_dataset
        from sound2img.evaluation.embed import ALL_FOLDS, DatasetSpec

        known = self.c.get("datasets") or {}
        out = []
        for n in names:
            if n not in known:
                raise UserInputError(f"unknown dataset {n!r}; configured under datasets: {', '.join(known)}")
            d = dict(known[n])
            if d.pop("name", n) != n or n not in ALL_FOLDS:
                raise UserInputError(f"datasets.{n}: only the fold-organised sets {', '.join(ALL_FOLDS)} are evaluated")
            root = d.pop("root", None)
            if not root or root == "???":
                raise UserInputError(
                    f"datasets.{n}.root is not set: pass datasets.{n}.root=<where the dataset was "
                    "unpacked> (see docs/reproduce.md)"
                )
            chosen = folds or d.pop("folds", None) or ALL_FOLDS[n]
            d.pop("folds", None)
            kwargs = {k: v for k, v in d.items() if k not in ("crop", "templates", "text_augment", "seed")}
            out.append(DatasetSpec(n, str(root), tuple(int(f) for f in chosen), kwargs))
            build_dataset(n, root=str(root), folds=list(out[-1].folds), load_images=False, **kwargs)
        return out


def _describe_spec(spec: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in spec.items())
