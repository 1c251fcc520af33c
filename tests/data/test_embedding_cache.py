"""The CLIP embedding cache: each key computed once, persistent, keyed by the CLIP spec and
preprocessing, safe with several processes, and self-healing when a shard is corrupt."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp

import pytest
import torch

from sound2img.data.embedding_cache import EmbeddingCache, spec_hash

SPEC = {"model": "ViT-B-32", "pretrained": "openai", "sha256": "ab" * 32}
DIM = 8


def fake_embed(items: list[str]) -> torch.Tensor:
    """A deterministic 'encoder': an embedding derived from the item's hash."""
    rows = [torch.tensor(list(hashlib.sha256(s.encode()).digest()[:DIM]), dtype=torch.float32) / 255 for s in items]
    return torch.stack(rows)


class CountingEncoder:
    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, items):
        self.calls.append(list(items))
        return fake_embed(items)

    @property
    def items(self):
        return [x for call in self.calls for x in call]


def test_each_prompt_is_encoded_once_and_results_are_in_order(tmp_path):
    cache = EmbeddingCache(tmp_path, SPEC, "clip")
    enc = CountingEncoder()
    out = cache.get_text(["a dog", "rain", "a dog"], enc)
    assert enc.calls == [["a dog", "rain"]]
    assert torch.equal(out, fake_embed(["a dog", "rain", "a dog"]))
    out2 = cache.get_text(["rain", "thunder"], enc)
    assert enc.calls[1:] == [["thunder"]] and torch.equal(out2, fake_embed(["rain", "thunder"]))
    assert cache.get_text([], enc).shape[0] == 0 and len(enc.calls) == 2


def test_batches_become_shards_and_persist_across_instances(tmp_path):
    enc = CountingEncoder()
    items = [f"prompt {i}" for i in range(5)]
    EmbeddingCache(tmp_path, SPEC, "clip").get_text(items, enc, batch_size=2)
    assert [len(c) for c in enc.calls] == [2, 2, 1]
    store = next(tmp_path.glob("text-*"))
    assert len(list(store.glob("*.safetensors"))) == 3
    assert json.loads((store / "spec.json").read_text())["clip"] == SPEC
    enc2 = CountingEncoder()
    again = EmbeddingCache(tmp_path, dict(SPEC), "clip").get_text(items[::-1], enc2)
    assert enc2.calls == [] and torch.equal(again, fake_embed(items[::-1]))


def test_key_changes_with_clip_spec_and_images_with_preprocess(tmp_path):
    enc = CountingEncoder()
    EmbeddingCache(tmp_path, SPEC, "clip").get_text(["a"], enc)
    EmbeddingCache(tmp_path, {**SPEC, "sha256": "cd" * 32}, "clip").get_text(["a"], enc)
    EmbeddingCache(tmp_path, {**SPEC, "model": "ViT-L-14"}, "clip").get_text(["a"], enc)
    assert len(enc.calls) == 3
    # The text tower never sees image preprocessing: text is shared across preprocessings...
    EmbeddingCache(tmp_path, SPEC, "styleclip").get_text(["a"], enc)
    assert len(enc.calls) == 3
    # ...image embeddings are not.
    img = CountingEncoder()
    EmbeddingCache(tmp_path, SPEC, "clip").get_images(["vggsound/x_000010"], img)
    EmbeddingCache(tmp_path, SPEC, "clip").get_images(["vggsound/x_000010"], img)
    EmbeddingCache(tmp_path, SPEC, "styleclip").get_images(["vggsound/x_000010"], img)
    assert len(img.calls) == 2
    assert spec_hash({"a": 1, "b": 2}) == spec_hash({"b": 2, "a": 1})


@pytest.mark.parametrize("damage", ["flip_bytes", "truncate", "delete"])
def test_corrupt_shard_is_detected_and_recomputed(tmp_path, damage):
    items = [f"k{i}" for i in range(6)]
    EmbeddingCache(tmp_path, SPEC, "clip").get_images(items, fake_embed, batch_size=3)
    store = next(tmp_path.glob("image-*"))
    index = json.loads((store / "index.json").read_text())
    victim, entry = sorted(index["shards"].items())[0]
    path = store / victim
    data = bytearray(path.read_bytes())
    if damage == "flip_bytes":  # still parses as safetensors, but the numbers changed
        data[-4:] = b"\x00\x00\x80\x7f"
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        path.unlink()
    enc = CountingEncoder()
    out = EmbeddingCache(tmp_path, SPEC, "clip").get_images(items, enc)
    assert sorted(enc.items) == sorted(entry["ids"])  # only the damaged shard's items
    assert torch.equal(out, fake_embed(items))
    assert not path.exists()
    enc3 = CountingEncoder()
    EmbeddingCache(tmp_path, SPEC, "clip").get_images(items, enc3)
    assert enc3.calls == []


def test_lost_or_corrupt_index_is_rebuilt_from_shards(tmp_path):
    items = ["x", "y", "z"]
    EmbeddingCache(tmp_path, SPEC, "clip").get_text(items, fake_embed, batch_size=1)
    store = next(tmp_path.glob("text-*"))
    (store / "index.json").write_text("{not json")
    enc = CountingEncoder()
    out = EmbeddingCache(tmp_path, SPEC, "clip").get_text(items, enc)
    assert enc.calls == [] and torch.equal(out, fake_embed(items))


def test_a_second_instance_sees_what_another_wrote(tmp_path):
    reader = EmbeddingCache(tmp_path, SPEC, "clip")  # opened before anything was written
    EmbeddingCache(tmp_path, SPEC, "clip").get_text(["late"], fake_embed)
    enc = CountingEncoder()
    assert torch.equal(reader.get_text(["late"], enc), fake_embed(["late"])) and enc.calls == []


def _worker(root: str, start: int, queue) -> None:
    cache = EmbeddingCache(root, SPEC, "clip")
    for i in range(start, start + 20, 2):
        cache.get_text([f"p{i}", f"p{i + 1}", "shared"], fake_embed)
    queue.put(cache.text.num_computed)


def test_concurrent_processes_lose_no_shard(tmp_path):
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), start, queue)) for start in (0, 100, 200)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    computed = sum(queue.get(timeout=5) for _ in procs)
    everything = [f"p{i}" for s in (0, 100, 200) for i in range(s, s + 20)] + ["shared"]
    enc = CountingEncoder()
    cache = EmbeddingCache(tmp_path, SPEC, "clip")
    out = cache.get_text(everything, enc)
    assert enc.calls == [] and torch.equal(out, fake_embed(everything))
    index = json.loads((next(tmp_path.glob("text-*")) / "index.json").read_text())
    assert len(index["shards"]) == len(list(next(tmp_path.glob("text-*")).glob("*.safetensors")))
    assert 61 <= computed <= 63  # "shared" may be computed by each process racing for it


def test_bad_encoder_output_is_refused(tmp_path):
    cache = EmbeddingCache(tmp_path, SPEC, "clip")
    with pytest.raises(ValueError, match="want \\[n,D\\]"):
        cache.get_text(["a", "b"], lambda items: torch.zeros(1, DIM))
    cache.get_text(["a"], fake_embed)
    for instance in (cache, EmbeddingCache(tmp_path, SPEC, "clip")):  # the reopened one checks the disk
        with pytest.raises(ValueError, match="width"):
            instance.get_text(["b"], lambda items: torch.zeros(len(items), DIM + 1))
