"""Prompt templates and EDA: determinism by seed, and each operation does what it says."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sound2img.data import prompts
from sound2img.data.prompts import (
    augment_text,
    make_prompt,
    random_deletion,
    random_insertion,
    random_swap,
    synonym_replacement,
    synonym_source,
    synonyms,
    zero_shot_templates,
)

SENTENCE = "a dog barking near the loud car".split()


def is_subsequence(short, long):
    it = iter(long)
    return all(word in it for word in short)


def test_templates_and_make_prompt():
    templates = zero_shot_templates()
    assert len(templates) >= 5 and all(t.count("{}") == 1 for t in templates)
    assert "a sound of {}." in templates and "{}" in templates
    outs = [make_prompt("car horn", random.Random(s)) for s in range(40)]
    assert all(o in {t.format("car horn") for t in templates} for o in outs)
    assert len(set(outs)) > 3  # draws from several templates
    assert make_prompt("rain", random.Random(5)) == make_prompt("rain", random.Random(5))
    assert make_prompt("rain", random.Random(0), ["the {} falls"]) == "the rain falls"


def test_synonym_replacement_swaps_words_for_their_synonyms():
    for seed in range(10):
        out = synonym_replacement(SENTENCE, 1, random.Random(seed), source="builtin")
        assert len(out) == len(SENTENCE)
        changed = [(a, b) for a, b in zip(SENTENCE, out) if a != b]
        assert len(changed) == 1 and changed[0][1] in synonyms(changed[0][0], "builtin")
        assert changed[0][0] not in ("a", "the", "near")  # stop words are left alone
    two = synonym_replacement(SENTENCE, 2, random.Random(0), source="builtin")
    assert sum(a != b for a, b in zip(SENTENCE, two)) == 2
    # Punctuation is kept around a replaced word.
    assert synonym_replacement(["dog."], 1, random.Random(0), source="builtin")[0] in {
        s + "." for s in synonyms("dog", "builtin")
    }


def test_random_insertion_adds_a_synonym_of_a_present_word():
    for seed in range(10):
        out = random_insertion(SENTENCE, 1, random.Random(seed), source="builtin")
        assert len(out) == len(SENTENCE) + 1 and is_subsequence(SENTENCE, out)
        extra = list((Counter(out) - Counter(SENTENCE)).elements())
        assert len(extra) == 1 and any(extra[0] in synonyms(w, "builtin") for w in SENTENCE)
    assert random_insertion(["xyzzy", "plugh"], 2, random.Random(0), source="builtin") == ["xyzzy", "plugh"]


def test_random_swap_permutes_two_positions():
    for seed in range(10):
        out = random_swap(SENTENCE, 1, random.Random(seed))
        assert Counter(out) == Counter(SENTENCE)
        assert sum(a != b for a, b in zip(SENTENCE, out)) == 2  # the words are distinct
    assert random_swap(["alone"], 3, random.Random(0)) == ["alone"]


def test_random_deletion_keeps_a_subsequence_and_one_word():
    for seed in range(10):
        out = random_deletion(SENTENCE, 0.3, random.Random(seed))
        assert 1 <= len(out) <= len(SENTENCE) and is_subsequence(out, SENTENCE)
    assert random_deletion(SENTENCE, 0.0, random.Random(0)) == SENTENCE
    assert len(random_deletion(SENTENCE, 1.0, random.Random(0))) == 1
    lengths = [len(random_deletion(SENTENCE, 0.5, random.Random(s))) for s in range(50)]
    assert min(lengths) < len(SENTENCE) - 1  # it does delete


def test_augment_text_is_deterministic_by_seed_and_varies_across_seeds():
    text = "the sound of a dog barking in the rain"
    a = [augment_text(text, random.Random(s)) for s in range(30)]
    b = [augment_text(text, random.Random(s)) for s in range(30)]
    assert a == b
    assert len(set(a)) > 10 and sum(x != text for x in a) > 20
    deleted = augment_text(text, random.Random(3), ops=["rd"], alpha=0.4)
    assert deleted != text and is_subsequence(deleted.split(), text.split())
    rng = random.Random(1)
    with pytest.raises(ValueError, match="EDA ops"):
        augment_text(text, rng, ops=["xx"])


def test_synonym_source_is_probed_without_downloading(monkeypatch):
    assert synonym_source() in ("wordnet", "builtin")
    assert "canine" in synonyms("dog", "builtin") and "dog" not in synonyms("dog", "builtin")
    assert synonyms("xyzzy", "builtin") == []

    class FakeLemma:
        def __init__(self, name):
            self._name = name

        def name(self):
            return self._name

    class FakeSynset:
        def lemmas(self):
            return [FakeLemma("dog"), FakeLemma("domestic_dog"), FakeLemma("Canis_familiaris"), FakeLemma("3d")]

    class FakeWordNet:
        def synsets(self, word):
            return [FakeSynset()] if word == "dog" else []

    monkeypatch.setattr(prompts, "_wordnet", lambda: FakeWordNet())
    assert synonym_source() == "wordnet"
    assert synonyms("dog") == ["canis familiaris", "domestic dog"]
    out = synonym_replacement(["dog"], 1, random.Random(0))
    assert " ".join(out) in ("canis familiaris", "domestic dog")
    monkeypatch.setattr(prompts, "_wordnet", lambda: None)
    with pytest.raises(ValueError, match="not installed"):
        synonyms("dog", "wordnet")


def test_dataset_text_augment_is_seeded_per_item():
    from sound2img.data import build_dataset

    kw = dict(
        num_classes=4,
        num_per_class=4,
        sample_rate=8000,
        num_samples=800,
        text_augment=True,
        templates=["the sound of a {} in the room"],
    )
    a = build_dataset("synthetic", **kw)
    b = build_dataset("synthetic", **kw)
    texts = [a[i]["text"] for i in range(len(a))]
    assert texts == [b[i]["text"] for i in range(len(b))]
    plain = {f"the sound of a {n} in the room" for n in a.class_names}
    assert sum(t not in plain for t in texts) >= len(texts) // 2
    a.set_epoch(1)
    assert [a[i]["text"] for i in range(len(a))] != texts
