"""What the table runners (``evaluation.tables``) take from one ``reproduce`` config: its
networks (from the factory's one build-once cache), sources, optimiser settings and
datasets, with the provenance of what was used."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sound2img import factory
from sound2img.errors import UserInputError
from sound2img.manipulation.optimizer import optimizer_kwargs

if TYPE_CHECKING:
    from sound2img.config import DomainOptions, ReproduceConfig


class TableContext:
    """The networks of ``cfg`` built on first use (``factory.Networks``: each at most
    once, shared with anything else given the same cache) and the provenance of what was
    used. The device is resolved once, by the cache."""

    def __init__(self, cfg: ReproduceConfig, networks: factory.Networks | None = None):
        self.cfg = cfg
        self.networks = networks if networks is not None else factory.Networks(cfg.device)
        self.device = self.networks.device
        self.weights: dict[str, str] = {}  # what → file (sha256 …) or the random network's label
        self.work_dir: Path | None = None  # where edit-queue tables keep their edits
        self.overwrite = False
        self._used: dict[str, Any] = {}  # "encoder" / "clip": what this table asked for (provenance)
        # fetches every file the table reads, once, before the first network is built (after the
        # table's own checks of its settings); set by tables.run_table
        self.ensure_weights: Callable[[], None] | None = None

    def check_weights(self) -> None:
        """Run ``ensure_weights`` once (offline: one message naming every missing file)."""
        ensure, self.ensure_weights = self.ensure_weights, None
        if ensure is not None:
            ensure()

    def encoder(self):
        """``(encoder, frontend)`` from ``cfg.encoder`` and ``cfg.audio``."""
        self.check_weights()
        pair = self.networks.encoder(self.cfg.encoder, self.cfg.audio)
        if "encoder" not in self._used:
            e = self.cfg.encoder or {}
            self.weights["audio encoder"] = self._describe(e.get("path"), f"random {e.get('arch')}")
            self._used["encoder"] = pair
        return pair

    def clip(self):
        """CLIP towers in the audio encoder's space: ``from_encoder`` picks them, others are
        checked against the encoder once it is in use."""
        encoder = self._used.get("encoder", (None,))[0]
        if encoder is None and factory.towers_from_encoder(self.cfg.clip):
            encoder = self.encoder()[0]
        self.check_weights()
        clip = self.networks.clip(self.cfg.clip, encoder)
        if "clip" not in self._used:
            spec = clip.spec()
            sha = spec.get("sha256")
            self.weights["CLIP"] = (
                f"{spec.get('model_name')} / {spec.get('pretrained')} (sha256 {sha[:12]}…)"
                if sha
                else f"random {spec.get('model_name')} towers (seed {spec.get('seed')}), no file"
            )
            self._used["clip"] = clip
        return clip

    def generator(self, domain: DomainOptions | None):
        """The generator of a domain (``generator``: a registry name or file), or
        ``cfg.generator`` when the domain names none or under ``preset=tiny``."""
        self.check_weights()
        name = None if self.cfg.tiny or domain is None else domain.generator
        if name is None:
            g = self.cfg.generator
            G = self.networks.generator(g)
            label, source = "cfg.generator", g.path or (None if g.name == "tiny" else g.name)
        else:
            G = self.networks.generator({"name": name})
            label, source = name, name
        if f"generator ({label})" not in self.weights:
            self.weights[f"generator ({label})"] = self._describe(source, f"random tiny generator {G.img_resolution}px")
        return G

    def identity(self):
        """The identity loss: ``cfg.identity``, else IR-SE50 (a random tiny one under tiny)."""
        spec = self.cfg.identity or ("tiny" if self.cfg.tiny else "ir_se50")
        self.check_weights()
        loss = self.networks.identity(spec)
        if "identity (IR-SE50)" not in self.weights:
            self.weights["identity (IR-SE50)"] = self._describe(None if spec == "tiny" else spec, "random tiny IR-SE")
        return loss

    @staticmethod
    def _describe(source: str | None, random_label: str) -> str:
        """``file (sha256 abcdef123456…)`` for weights, or the random network's label."""
        if not source:
            return random_label
        from sound2img.utils.files import sha256_file
        from sound2img.weights import resolve_weights

        path = resolve_weights(str(source), allow_download=False)
        return f"{Path(path).name} (sha256 {sha256_file(path)[:12]}…)"

    def domain_optim(self, domain_name: str | None) -> tuple[DomainOptions | None, dict[str, Any]]:
        """``(domain, optimiser kwargs)`` for a domain of ``cfg.domains`` (its generator and
        λ values) or, for ``None``, the base config's; nothing is built."""
        domains = self.cfg.domains
        if domain_name is not None and domain_name not in domains:
            raise UserInputError(f"unknown domain {domain_name!r}; configured: {', '.join(domains) or 'none'}")
        domain = domains.get(domain_name) if domain_name is not None else None
        lambdas = {} if domain is None else {"lambda_sim": domain.lambda_sim, "lambda_id": domain.lambda_id}
        manipulate = dataclasses.asdict(self.cfg.manipulate)
        optim = optimizer_kwargs(manipulate | {k: v for k, v in lambdas.items() if v is not None})
        optim["noise_mode"] = self.cfg.generator.noise_mode or "const"
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
        trunc = self.cfg.manipulate.truncation
        # one seed at a time, as manipulate.py and the edit queue map a seed: the mapping
        # network's float sums depend on the batch, and Adam magnifies such differences
        return torch.cat([sample_source_latents(G, [s], trunc, self.device) for s in range(seed, seed + n)])

    def provenance(self, images: bool = True) -> dict[str, Any]:
        """What was used: weights, front end, device and (``images``: the table scores
        generator images) CLIP's preprocessing of them."""
        prov: dict[str, Any] = {"tiny": self.cfg.tiny, "device": str(self.device), "weights": dict(self.weights)}
        if images:  # the edits' compute precision (optimize_latents resolves "auto" the same way)
            from sound2img.utils.precision import resolve_precision

            prov["precision"] = resolve_precision(self.cfg.manipulate.precision, self.device)
        if "encoder" in self._used:
            prov["frontend"] = ", ".join(f"{k}={v}" for k, v in self._used["encoder"][1].spec().items())
        if images and "clip" in self._used:
            clip = self._used["clip"]
            prov["clip_preprocess"] = f"{clip.preprocess_mode} (input {clip.image_size[0]} px)"
        return prov

    def dataset_specs(self, names: Sequence[str], folds: Sequence[int] | None = None):
        """``cfg.datasets.<name>`` (a ``configs/data`` entry: ``root``, ``folds`` and reader
        arguments) → ``DatasetSpec``s; ``folds`` overrides the configured ones. Each dataset's
        metadata is read once here, so a wrong root fails before any network is built."""
        from sound2img.evaluation.embed import ALL_FOLDS, DatasetSpec

        known = self.cfg.datasets
        out = []
        for n in names:
            if n not in known:
                raise UserInputError(f"unknown dataset {n!r}; configured under datasets: {', '.join(known)}")
            d = dict(known[n])  # reader arguments: a dict is the data here
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
            factory.build_fold_dataset(out[-1], out[-1].folds, load_images=False)
        return out
