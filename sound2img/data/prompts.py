"""Text prompts from class names (templates; the zero-shot set) and EDA augmentation
(Wei & Zou 2019: synonym replacement, random insertion, random swap, random deletion), as
the paper uses (docs/method.md §1) for its text targets. All randomness comes from a ``random.Random``.

Synonyms come from WordNet only when nltk *and* its wordnet data are already installed
(probed, never downloaded); otherwise from the small built-in table of sound words below,
so synonym replacement / insertion only change words in that table (others are left alone).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

# CLIP/AudioCLIP/Wav2CLIP-style audio prompts. The zero-shot evaluation averages the text
# embeddings over all of them (prompt ensembling); training draws one per item.
_AUDIO_TEMPLATES = (
    "a sound of {}.",
    "the sound of {}.",
    "this is a sound of {}.",
    "a recording of {}.",
    "an audio clip of {}.",
    "a sound of a {}.",
    "{}",
)


def zero_shot_templates() -> tuple[str, ...]:
    """The templates the zero-shot classifier averages over (one ``{}`` each)."""
    return _AUDIO_TEMPLATES


@torch.no_grad()
def encode_class_texts(
    encode_text: Callable[[list[str]], torch.Tensor], class_names: Sequence[str], templates: Sequence[str] | None = None
) -> torch.Tensor:
    """``class_emb [C,D]``: per class, the mean of its normalised template embeddings
    (``templates`` default: ``zero_shot_templates()``), renormalised: CLIP's prompt
    ensembling. ``encode_text`` maps a list of strings to ``[N,D]``."""
    templates = list(templates or zero_shot_templates())
    names = [" ".join(c.replace("_", " ").split()) for c in class_names]
    emb = encode_text([t.format(c) for c in names for t in templates]).float()
    emb = F.normalize(emb, dim=-1).reshape(len(names), len(templates), -1)
    return F.normalize(emb.mean(dim=1), dim=-1)


def training_templates() -> tuple[str, ...]:
    """The templates a training prompt is drawn from (same set as zero-shot)."""
    return _AUDIO_TEMPLATES


def make_prompt(class_name: str, rng: random.Random, templates: Sequence[str] | None = None) -> str:
    """A prompt for ``class_name``: one of ``templates`` (default ``training_templates()``)
    chosen by ``rng`` and filled in."""
    templates = templates or training_templates()
    return rng.choice(list(templates)).format(class_name)


# ---- synonyms ------------------------------------------------------------------------
# Groups of interchangeable words for common sound-class vocabulary (ESC-50, US8K,
# VGGSound, AudioSet, the synthetic classes). Symmetric: each word maps to the others.
_SYNONYM_GROUPS = (
    ("dog", "canine", "hound", "pooch"),
    ("puppy", "pup"),
    ("cat", "feline", "kitty"),
    ("bird", "songbird"),
    ("birds", "songbirds"),
    ("rooster", "cockerel"),
    ("insects", "bugs"),
    ("barking", "yapping", "woofing"),
    ("bark", "woof", "yap"),
    ("meowing", "mewing"),
    ("chirping", "tweeting", "twittering"),
    ("crying", "sobbing", "weeping", "wailing"),
    ("laughing", "laughter", "giggling", "chuckling"),
    ("speech", "speaking", "talking"),
    ("man", "male", "gentleman"),
    ("woman", "female", "lady"),
    ("child", "kid"),
    ("children", "kids"),
    ("baby", "infant"),
    ("people", "persons", "folks"),
    ("car", "automobile", "auto"),
    ("vehicle", "automobile"),
    ("engine", "motor"),
    ("idling", "ticking over"),
    ("airplane", "aeroplane", "plane", "aircraft"),
    ("train", "railway"),
    ("siren", "alarm"),
    ("horn", "klaxon"),
    ("drilling", "boring"),
    ("jackhammer", "pneumatic drill"),
    ("gun", "firearm"),
    ("shot", "gunshot", "blast"),
    ("explosion", "blast", "detonation"),
    ("knock", "rap", "tap"),
    ("knocking", "rapping"),
    ("door", "doorway"),
    ("clock", "timepiece"),
    ("tick", "click"),
    ("ticking", "clicking"),
    ("rain", "rainfall", "shower", "drizzle"),
    ("thunder", "thunderclap"),
    ("thunderstorm", "storm", "tempest"),
    ("wind", "breeze", "gust"),
    ("water", "liquid"),
    ("waves", "surf", "breakers"),
    ("ocean", "sea"),
    ("fire", "flames", "blaze"),
    ("crackling", "crackle", "sputtering"),
    ("music", "melody", "tune"),
    ("song", "tune"),
    ("singing", "chanting", "vocalizing"),
    ("playing", "performing"),
    ("bell", "chime"),
    ("bells", "chimes"),
    ("footsteps", "steps", "footfalls"),
    ("snoring", "snore"),
    ("sneezing", "sneeze"),
    ("coughing", "cough"),
    ("breathing", "respiration"),
    ("clapping", "applause"),
    ("whistle", "whistling"),
    ("hum", "drone", "buzz"),
    ("humming", "droning", "buzzing"),
    ("clicks", "ticks", "taps"),
    ("beeping", "bleeping"),
    ("noise", "din", "racket"),
    ("sound", "noise"),
    ("loud", "noisy", "deafening"),
    ("quiet", "soft", "faint"),
    ("fast", "quick", "rapid"),
    ("slow", "unhurried", "leisurely"),
    ("low", "deep"),
    ("high", "shrill", "piercing"),
    ("rumble", "rumbling", "roar"),
    ("hiss", "hissing", "sizzle"),
    ("chirp", "tweet"),
    ("rising", "ascending", "climbing"),
    ("falling", "descending", "dropping"),
    ("tone", "note", "pitch"),
    ("recording", "clip"),
    ("vacuum", "hoover"),
    ("street", "road"),
    ("air conditioner", "air conditioning"),
    ("glass", "pane"),
    ("breaking", "shattering", "smashing"),
    ("bubbling", "gurgling"),
)

_STOP_WORDS = frozenset(
    "a an the of this that these those is are was were be been to in on at by for with "
    "and or but from as it its into over under".split()
)


@functools.lru_cache(maxsize=1)
def _builtin_table() -> dict[str, tuple[str, ...]]:
    table: dict[str, list[str]] = {}
    for group in _SYNONYM_GROUPS:
        for word in group:
            others = table.setdefault(word, [])
            others += [w for w in group if w != word and w not in others]
    return {k: tuple(v) for k, v in table.items()}


@functools.lru_cache(maxsize=1)
def _wordnet():
    """nltk's wordnet reader if nltk and its data are installed, else None (no download)."""
    try:
        from nltk.corpus import wordnet

        wordnet.synsets("dog")  # raises LookupError when the data is absent
        return wordnet
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return None


def synonym_source() -> str:
    """``"wordnet"`` when nltk's wordnet data is installed, else ``"builtin"``."""
    return "wordnet" if _wordnet() is not None else "builtin"


def synonyms(word: str, source: str = "auto") -> list[str]:
    """Synonyms of ``word`` (lower case, without ``word`` itself), sorted for determinism.
    ``source``: ``auto`` (WordNet when installed, else built-in), ``wordnet`` or ``builtin``."""
    word = word.lower()
    if source not in ("auto", "wordnet", "builtin"):
        raise ValueError(f"synonym source must be auto, wordnet or builtin, got {source!r}")
    wn = _wordnet() if source in ("auto", "wordnet") else None
    if source == "wordnet" and wn is None:
        raise ValueError("synonym source 'wordnet' requested but nltk's wordnet data is not installed")
    if wn is None:
        return list(_builtin_table().get(word, ()))
    found = {
        lemma.name().replace("_", " ").replace("-", " ").lower() for syn in wn.synsets(word) for lemma in syn.lemmas()
    }
    found = {w for w in found if w != word and all(c.isalpha() or c == " " for c in w)}
    return sorted(found)


# ---- EDA operations (each takes and returns a list of words) ---------------------------
_PUNCT = ".,;:!?\"'"


def _bare(word: str) -> str:
    """The word without surrounding punctuation, lower case ("dog." → "dog")."""
    return word.lower().strip(_PUNCT)


def _candidates(words: Sequence[str], source: str) -> list[int]:
    return [i for i, w in enumerate(words) if _bare(w) not in _STOP_WORDS and synonyms(_bare(w), source)]


def synonym_replacement(words: Sequence[str], n: int, rng: random.Random, source: str = "auto") -> list[str]:
    """Replace up to ``n`` distinct non-stop words that have synonyms by a random synonym."""
    out = list(words)
    idx = _candidates(out, source)
    rng.shuffle(idx)
    for i in idx[:n]:
        tail = out[i][len(out[i].rstrip(_PUNCT)) :]  # keep "dog." → "hound."
        out[i] = rng.choice(synonyms(_bare(out[i]), source)) + tail
    return " ".join(out).split()


def random_insertion(words: Sequence[str], n: int, rng: random.Random, source: str = "auto") -> list[str]:
    """``n`` times: insert a synonym of a random word (that has one) at a random position."""
    out = list(words)
    for _ in range(n):
        idx = _candidates(out, source)
        if not idx:
            break
        new = rng.choice(synonyms(_bare(out[rng.choice(idx)]), source))
        out.insert(rng.randint(0, len(out)), new)
    return " ".join(out).split()


def random_swap(words: Sequence[str], n: int, rng: random.Random) -> list[str]:
    """``n`` times: swap two words at distinct random positions (no-op below two words)."""
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(n):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


def random_deletion(words: Sequence[str], p: float, rng: random.Random) -> list[str]:
    """Delete each word with probability ``p``; one word always survives."""
    out = list(words)
    if len(out) <= 1:
        return out
    kept = [w for w in out if rng.random() >= p]
    return kept if kept else [rng.choice(out)]


EDA_OPS = ("sr", "ri", "rs", "rd")


def augment_text(
    text: str, rng: random.Random, ops: Sequence[str] = ("sr", "ri", "rs"), alpha: float = 0.1, source: str = "auto"
) -> str:
    """One EDA operation drawn from ``ops`` applied to ``text``; it changes
    ``max(1, round(alpha·len(words)))`` words (deletion: each word with probability alpha).
    The default ops are the three the paper names (sr = synonym replacement, ri = random
    insertion, rs = random swap); ``rd`` (random deletion) is available."""
    bad = [op for op in ops if op not in EDA_OPS]
    if bad or not ops:
        raise ValueError(f"EDA ops must be a non-empty subset of {EDA_OPS}, got {list(ops)}")
    words = text.split()
    if not words:
        return text
    n = max(1, round(alpha * len(words)))
    op = rng.choice(list(ops))
    if op == "sr":
        words = synonym_replacement(words, n, rng, source)
    elif op == "ri":
        words = random_insertion(words, n, rng, source)
    elif op == "rs":
        words = random_swap(words, n, rng)
    else:
        words = random_deletion(words, alpha, rng)
    return " ".join(words)
