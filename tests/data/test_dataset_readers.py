"""Each reader on a tiny dataset written in that dataset's real directory and CSV layout;
fold selection; skip-and-count of unreadable samples; the skip-fraction error; collate."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch

from sound2img.data import DatasetError, build_dataset, collate, list_datasets
from sound2img.data.base import fix_length
from sound2img.errors import UserInputError

SR = 8000


def dominant_hz(wav: torch.Tensor, sr: int) -> float:
    spec = np.abs(np.fft.rfft(wav.numpy()))
    return float(np.argmax(spec) * sr / wav.numel())


# ---- ESC-50 --------------------------------------------------------------------------
ESC_HEADER = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]


def make_esc50(root: Path, fx, rows=None, missing=(), garbage=()):
    """ESC-50 layout: meta/esc50.csv + audio/<filename>; class k is a tone of 200·(k+1) Hz."""
    if rows is None:
        rows = [
            [
                f"{fold}-{100 + k}-A-{k}.wav",
                fold,
                k,
                ["dog", "crackling_fire"][k],
                "True" if k == 0 else "False",
                100 + k,
                "A",
            ]
            for fold in (1, 2, 3)
            for k in (0, 1)
        ]
    (root / "meta").mkdir(parents=True)
    with open(root / "meta" / "esc50.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(ESC_HEADER)
        w.writerows(rows)
    for row in rows:
        name = str(row[0])
        if name in missing:
            continue
        if name in garbage:
            (root / "audio").mkdir(exist_ok=True)
            (root / "audio" / name).write_bytes(b"RIFF\x00\x00garbage, not a wave file" * 4)
            continue
        try:
            k = int(row[2])
        except ValueError:
            k = 0
        fx.write_wav(root / "audio" / name, fx.tone(200.0 * (k + 1), 0.5, SR), SR)
    return root


def test_esc50_reads_layout_and_selects_folds(tmp_path, fixtures):
    root = make_esc50(tmp_path / "ESC-50-master", fixtures)
    ds = build_dataset(
        "esc50", root=root, folds=[1, 2], sample_rate=SR, num_samples=2000, crop="center", templates=["a sound of {}."]
    )
    assert len(ds) == 4 and ds.sample_rate == SR and ds.num_samples == 2000
    assert len(ds.class_names) == 50 and ds.class_names[:2] == ["dog", "crackling fire"]
    assert {ds[i]["key"] for i in range(4)} == {
        "esc50/1-100-A-0.wav",
        "esc50/1-101-A-1.wav",
        "esc50/2-100-A-0.wav",
        "esc50/2-101-A-1.wav",
    }
    for i in range(len(ds)):
        item = ds[i]
        assert item["wav"].shape == (2000,) and item["wav"].dtype == torch.float32
        assert item["label"] in (0, 1) and item["class_name"] == ds.class_names[item["label"]]
        assert item["text"] == f"a sound of {item['class_name']}."
        assert item["image"] is None
        assert dominant_hz(item["wav"], SR) == pytest.approx(200 * (item["label"] + 1), abs=8)
    only3 = build_dataset("esc50", root=root, folds=3, sample_rate=SR)
    assert sorted(r.key for r in only3.records) == ["esc50/3-100-A-0.wav", "esc50/3-101-A-1.wav"]
    assert only3.num_samples == 5 * SR  # the dataset's clip length by default; 0.5 s files are zero-padded
    assert only3[0]["wav"][SR // 2 + 10 :].abs().max() == 0
    esc10 = build_dataset("esc50", root=root, esc10_only=True, sample_rate=SR)
    assert {r.label for r in esc10.records} == {0} and len(esc10) == 3
    with pytest.raises(DatasetError, match="folds"):
        build_dataset("esc50", root=root, folds=[6], sample_rate=SR)


def test_missing_metadata_and_columns_are_one_line_errors(tmp_path):
    with pytest.raises(UserInputError, match="esc50.csv not found"):
        build_dataset("esc50", root=tmp_path)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "esc50.csv").write_text("filename,fold\na.wav,1\n")
    with pytest.raises(DatasetError, match=r"lacks column\(s\) \['target', 'category'\]"):
        build_dataset("esc50", root=tmp_path)


def test_unreadable_samples_are_skipped_and_counted(tmp_path, fixtures):
    rows = [[f"1-{i}-A-{i % 2}.wav", 1, i % 2, ["dog", "rain"][i % 2], "False", i, "A"] for i in range(9)]
    rows.insert(4, ["1-bad-A-0.wav", "one", 0, "dog", "False", 99, "A"])  # unparsable fold: line 6 of the file
    root = make_esc50(tmp_path / "esc", fixtures, rows=rows, missing={"1-2-A-0.wav"}, garbage={"1-6-A-0.wav"})
    ds = build_dataset("esc50", root=root, sample_rate=SR, num_samples=1000, crop="center", max_skip_fraction=0.5)
    assert len(ds) == 9 and ds.num_total == 10
    assert ds.num_skipped == 1 and "esc50.csv row 6" in ds.skip_reasons[0]
    names = [r.key for r in ds.records]
    missing_i, garbage_i = names.index("esc50/1-2-A-0.wav"), names.index("esc50/1-6-A-0.wav")
    got = [ds[i] for i in range(len(ds))]
    # An unreadable item is replaced by the next readable one, deterministically.
    assert got[missing_i]["index"] == missing_i + 1 and got[missing_i]["key"] == names[missing_i + 1]
    assert got[garbage_i]["index"] == garbage_i + 1
    assert [g["index"] for g in got if g["index"] == names.index(g["key"])] == [g["index"] for g in got]
    assert ds.num_skipped == 3 and ds.skipped_fraction() == pytest.approx(0.3)
    assert any("1-2-A-0.wav" in r for r in ds.skip_reasons) and any("1-6-A-0.wav" in r for r in ds.skip_reasons)
    again = ds[missing_i]  # known-bad: not decoded again, not counted twice
    assert again["index"] == missing_i + 1 and ds.num_skipped == 3


def test_skip_fraction_threshold_raises_with_counts(tmp_path, fixtures):
    rows = [[f"1-{i}-A-0.wav", 1, 0, "dog", "False", i, "A"] for i in range(9)]
    rows.append(["1-x-A-0.wav", 1, 77, "dog", "False", 9, "A"])  # unknown target: line 11
    root = make_esc50(tmp_path / "esc", fixtures, rows=rows, missing={"1-3-A-0.wav"})
    ds = build_dataset("esc50", root=root, sample_rate=SR, num_samples=500, max_skip_fraction=0.15)
    assert ds.skipped_fraction() == pytest.approx(0.1)
    ds[0]
    with pytest.raises(DatasetError, match=r"2 of 10 samples unreadable.*row 11.*1-3-A-0.wav") as info:
        ds[3]
    assert isinstance(info.value, UserInputError) and "\n" not in str(info.value)
    with pytest.raises(DatasetError, match="1 of 10 samples unreadable"):  # bad rows alone can exceed it
        build_dataset("esc50", root=root, sample_rate=SR, num_samples=500, max_skip_fraction=0.05)


def test_skip_counts_are_shared_with_dataloader_workers(tmp_path, fixtures):
    rows = [[f"1-{i}-A-0.wav", 1, 0, "dog", "False", i, "A"] for i in range(8)]
    root = make_esc50(tmp_path / "esc", fixtures, rows=rows, garbage={"1-5-A-0.wav"})
    ds = build_dataset("esc50", root=root, sample_rate=SR, num_samples=500, max_skip_fraction=0.5)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    indices = torch.cat([b["index"] for b in loader]).tolist()
    assert indices == [0, 1, 2, 3, 4, 6, 6, 7]
    assert ds.num_skipped == 1  # counted in a worker, visible here


def test_random_crop_is_seeded_per_item_and_epoch(tmp_path, fixtures):
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    rows = [["1-1-A-0.wav", 1, 0, "dog", "False", 1, "A"]]
    root = make_esc50(tmp_path / "esc", fixtures, rows=rows)
    fixtures.write_wav(root / "audio" / "1-1-A-0.wav", noise, SR)
    a = build_dataset("esc50", root=root, sample_rate=SR, num_samples=1000, crop="random", seed=3)
    b = build_dataset("esc50", root=root, sample_rate=SR, num_samples=1000, crop="random", seed=3)
    assert torch.equal(a[0]["wav"], b[0]["wav"]) and a[0]["text"] == b[0]["text"]
    crops = set()
    for epoch in range(4):
        a.set_epoch(epoch)
        crops.add(a[0]["wav"][:4].numpy().tobytes())
    assert len(crops) > 1
    centre = build_dataset("esc50", root=root, sample_rate=SR, num_samples=1000, crop="center")[0]["wav"]
    assert torch.allclose(centre, torch.from_numpy(noise[3500:4500]), atol=1e-4)
    # Each random crop is a contiguous window of the file.
    wav = a[0]["wav"].numpy()
    starts = [s for s in range(SR - 1000 + 1) if np.allclose(noise[s : s + 1000], wav, atol=1e-4)]
    assert len(starts) == 1


def test_long_files_are_cropped_before_decoding_like_after(tmp_path, fixtures):
    """A crop read from the file (offset/duration) matches cropping the whole resampled file."""
    from sound2img.audio.io import load_audio

    rows = [["1-1-A-0.wav", 1, 0, "dog", "False", 1, "A"]]
    root = make_esc50(tmp_path / "esc", fixtures, rows=rows)
    t = np.arange(3 * 44100) / 44100
    fixtures.write_wav(
        root / "audio" / "1-1-A-0.wav", (0.3 * np.sin(2 * np.pi * 300 * t * (1 + t))).astype(np.float32), 44100
    )
    ds = build_dataset("esc50", root=root, sample_rate=16000, num_samples=8000, crop="center")
    whole = fix_length(load_audio(root / "audio" / "1-1-A-0.wav", 16000), 8000, "center")
    got = ds[0]["wav"]
    assert got.shape == (8000,)
    assert torch.allclose(got[200:-200], whole[200:-200], atol=2e-3)


def test_fix_length_pads_and_crops():
    x = torch.arange(10, dtype=torch.float32)
    assert fix_length(x, 4, "center").tolist() == [3, 4, 5, 6]
    assert fix_length(x, 13).tolist() == list(range(10)) + [0, 0, 0]
    g = torch.Generator().manual_seed(0)
    out = fix_length(x, 4, "random", g)
    assert out.tolist() == list(range(int(out[0]), int(out[0]) + 4))


# ---- UrbanSound8K ----------------------------------------------------------------------
def test_urbansound8k_layout_folds_and_bad_rows(tmp_path, fixtures):
    root = tmp_path / "UrbanSound8K"
    (root / "metadata").mkdir(parents=True)
    rows = [["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]]
    for fold in (1, 2, 10):
        for cid, cls in ((1, "car_horn"), (3, "dog_bark")):
            name = f"{100 + cid}-{fold}-0-0.wav"
            rows.append([name, 100 + cid, 0.0, 0.4, 1, fold, cid, cls])
            fixtures.write_wav(root / "audio" / f"fold{fold}" / name, fixtures.tone(300.0 * cid, 0.4, SR), SR)
    rows.append(["999-1-0-0.wav", 999, 0, 1, 1, 1, 12, "helicopter"])  # unknown classID: line 8
    rows.append(["998-1-0-0.wav", 998, 0, 1, 1, "x", 1, "car_horn"])  # unparsable fold: line 9
    with open(root / "metadata" / "UrbanSound8K.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    ds = build_dataset(
        "us8k",
        root=root,
        folds=[2, 10],
        sample_rate=SR,
        num_samples=SR,
        crop="center",
        max_skip_fraction=0.5,
        templates=["{}"],
    )
    assert len(ds) == 4 and ds.num_skipped == 2
    assert any("row 8" in r and "classID 12" in r for r in ds.skip_reasons)
    assert any("row 9" in r for r in ds.skip_reasons)
    assert ds.class_names[1] == "car horn" and ds.class_names[3] == "dog bark" and len(ds.class_names) == 10
    keys = sorted(ds[i]["key"] for i in range(4))
    assert keys == [
        "us8k/fold10/101-10-0-0.wav",
        "us8k/fold10/103-10-0-0.wav",
        "us8k/fold2/101-2-0-0.wav",
        "us8k/fold2/103-2-0-0.wav",
    ]
    for i in range(4):
        item = ds[i]
        assert item["text"] == item["class_name"] and item["wav"].shape == (SR,)
        assert dominant_hz(item["wav"], SR) == pytest.approx(300 * item["label"], abs=10)


# ---- AudioSet --------------------------------------------------------------------------
def test_audioset_segments_labels_and_file_names(tmp_path, fixtures):
    root = tmp_path / "audioset"
    root.mkdir()
    (root / "class_labels_indices.csv").write_text(
        'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/04rlf,"Music"\n2,/m/0jbk,"Animal"\n'
        '3,/m/0k4j,"Car, vehicle"\n'
    )
    (root / "balanced_train_segments.csv").write_text(
        "# Segments csv created Sun Mar  5 10:54:31 2017\n"
        "# num_ytids=5, num_segs=5, num_unique_labels=4, num_positive_labels=7\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/04rlf"\n'
        '-0Gj8-vB1q4, 30.000, 40.000, "/m/0k4j"\n'
        'aaaaaaaaaaa, 0.000, 10.000, "/m/0jbk"\n'
        'bbbbbbbbbbb, 0.000, 10.000, "/m/zzzz"\n'
    )
    fixtures.write_wav(root / "audio" / "--PJHxphWEs.wav", fixtures.tone(500, 1.0, SR), SR)
    fixtures.write_wav(root / "audio" / "part00" / "Y-0Gj8-vB1q4.flac", fixtures.tone(900, 1.0, SR), SR, "FLAC")
    ds = build_dataset(
        "audioset",
        root=root,
        subset="balanced_train",
        sample_rate=SR,
        num_samples=SR,
        crop="center",
        templates=["the sound of {}"],
        max_skip_fraction=0.5,
    )
    assert ds.class_names == ["Speech", "Music", "Animal", "Car, vehicle"]
    assert ds.num_missing == 1 and ds.missing == ["aaaaaaaaaaa"]
    assert ds.num_skipped == 1 and "row 7" in ds.skip_reasons[0] and "/m/zzzz" in ds.skip_reasons[0]
    items = {ds[i]["key"]: ds[i] for i in range(len(ds))}
    a, b = items["audioset/--PJHxphWEs_30"], items["audioset/-0Gj8-vB1q4_30"]
    assert a["text"] == "the sound of Speech, Music" and a["label"] == 0 and a["class_name"] == "Speech"
    assert b["text"] == "the sound of Car, vehicle" and b["label"] == 3
    assert dominant_hz(a["wav"], SR) == pytest.approx(500, abs=5)
    assert dominant_hz(b["wav"], SR) == pytest.approx(900, abs=5)
    with pytest.raises(DatasetError, match="no file"):
        build_dataset("audioset", root=root, sample_rate=SR, max_missing_fraction=0.2)
    with pytest.raises(DatasetError, match="subset"):
        build_dataset("audioset", root=root, subset="balanced")


# ---- VGGSound --------------------------------------------------------------------------
def test_vggsound_audio_track_middle_frame_and_missing(tmp_path, fixtures):
    root = tmp_path / "vggsound"
    root.mkdir()
    (root / "vggsound.csv").write_text(
        "---g-f_I2yQ,1,people marching,test\n"
        "--0PQM4-hqg,30,waterfall burbling,train\n"
        '-0CamVQdP_Y,20,"male speech, man speaking",train\n'
        "--absent-id,0,waterfall burbling,train\n"
    )
    red, green, blue = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    sr = 16000
    fixtures.write_mp4(
        root / "video" / "--0PQM4-hqg_000030.mp4",
        [red] * 5 + [green] + [blue] * 4,
        audio=fixtures.tone(1000, 2.0, sr),
        sr=sr,
    )
    fixtures.write_mp4(
        root / "video" / "-0CamVQdP_Y_20.mp4",
        [blue] * 3 + [red] + [green] * 3,
        audio=fixtures.tone(2000, 1.4, sr),
        sr=sr,
    )
    fixtures.write_mp4(
        root / "video" / "---g-f_I2yQ_000001.mp4", [green] * 3, audio=fixtures.tone(3000, 0.6, sr), sr=sr
    )
    ds = build_dataset(
        "vggsound",
        root=root,
        split="train",
        sample_rate=sr,
        num_samples=sr,
        crop="center",
        image_size=32,
        templates=["{}"],
    )
    assert ds.class_names == ["male speech, man speaking", "people marching", "waterfall burbling"]
    assert len(ds) == 2 and ds.num_missing == 1 and ds.missing == ["--absent-id_000000"]
    items = {ds[i]["key"]: ds[i] for i in range(2)}
    fall, speech = items["vggsound/--0PQM4-hqg_000030"], items["vggsound/-0CamVQdP_Y_000020"]
    assert fall["label"] == 2 and fall["text"] == "waterfall burbling" and speech["label"] == 0
    assert fall["image"].shape == (3, 32, 32) and fall["image"].dtype == torch.uint8
    # Middle frame by timestamp: the one green frame of the first clip, the red of the second.
    assert fall["image"].float().mean((1, 2)).argmax() == 1 and fall["image"][1].float().mean() > 200
    assert speech["image"].float().mean((1, 2)).argmax() == 0 and speech["image"][0].float().mean() > 200
    assert dominant_hz(fall["wav"], sr) == pytest.approx(1000, abs=5)
    assert dominant_hz(speech["wav"], sr) == pytest.approx(2000, abs=5)
    test = build_dataset("vggsound", root=root, split="test", sample_rate=sr, num_samples=sr, load_images=False)
    assert len(test) == 1 and test[0]["label"] == 1 and test[0]["image"] is None
    custom = build_dataset("vggsound", root=root, split="test", sample_rate=sr, name_formats=["{ytid}_{start:06d}"])
    assert len(custom) == 1
    with pytest.raises(DatasetError, match="bad file name format"):
        build_dataset("vggsound", root=root, name_formats=["{video_id}"])
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text((root / "vggsound.csv").read_text() + "only-two,5\nx,abc,waterfall burbling,train\n")
    with_bad = build_dataset("vggsound", root=root, csv_path=bad_csv, sample_rate=sr, max_skip_fraction=0.5)
    assert len(with_bad) == 2 and with_bad.num_skipped == 2
    assert "bad.csv row 5: expected 4 fields" in with_bad.skip_reasons[0]
    assert "row 6: unparsable start_seconds 'abc'" in with_bad.skip_reasons[1]


# ---- manifest --------------------------------------------------------------------------
def test_manifest_relative_absolute_paths_images_and_labels(tmp_path, fixtures):
    from PIL import Image

    data = tmp_path / "mydata"
    fixtures.write_wav(data / "clips" / "a.wav", fixtures.tone(400, 0.5, SR), SR)
    fixtures.write_wav(tmp_path / "elsewhere" / "b.wav", fixtures.tone(800, 0.5, SR), SR)
    img = torch.zeros(3, 20, 30, dtype=torch.uint8)
    img[2] = 200
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(data / "a.png")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["audio", "text", "image", "label"])
    w.writerow(["clips/a.wav", "rain on a tin roof", "a.png", "rain"])
    w.writerow([str(tmp_path / "elsewhere" / "b.wav"), "a dog barking", "", "dog"])
    w.writerow(["clips/a.wav", "", "", "rain"])  # empty text: line 4
    (data / "manifest.csv").write_text(buf.getvalue())
    ds = build_dataset(
        "manifest",
        manifest=data / "manifest.csv",
        sample_rate=SR,
        num_samples=SR // 2,
        crop="center",
        image_size=None,
        max_skip_fraction=0.5,
    )
    assert ds.class_names == ["dog", "rain"] and len(ds) == 2 and ds.num_skipped == 1
    assert "manifest.csv row 4" in ds.skip_reasons[0]
    a, b = ds[0], ds[1]
    assert a["text"] == "rain on a tin roof" and a["label"] == 1 and a["class_name"] == "rain"
    assert a["image"].shape == (3, 20, 30) and torch.equal(a["image"], img)
    assert b["image"] is None and b["label"] == 0
    assert dominant_hz(b["wav"], SR) == pytest.approx(800, abs=5)
    batch = collate([a, b])
    assert batch["wav"].shape == (2, SR // 2) and batch["label"].tolist() == [1, 0]
    assert batch["has_image"].tolist() == [True, False] and batch["image"][1].sum() == 0
    assert collate([b, b])["image"] is None
    # No label column: each distinct text is a class.
    (data / "m2.csv").write_text("audio,text\nclips/a.wav,rain\nclips/a.wav,drizzle\n")
    ds2 = build_dataset("manifest", manifest=data / "m2.csv", sample_rate=SR)
    assert ds2.class_names == ["drizzle", "rain"] and [r.label for r in ds2.records] == [1, 0]
    assert [r.key for r in ds2.records] == ["manifest/clips/a.wav", "manifest/clips/a.wav#2"]


# ---- registry --------------------------------------------------------------------------
def test_registry_lists_and_rejects_clearly(tmp_path):
    assert list_datasets() == ["audioset", "esc50", "manifest", "shards", "synthetic", "us8k", "vggsound"]
    with pytest.raises(DatasetError, match="unknown dataset 'esc51'"):
        build_dataset("esc51")
    with pytest.raises(DatasetError, match=r"unknown argument\(s\) \['fold'\]"):
        build_dataset("esc50", root=tmp_path, fold=1)
    with pytest.raises(DatasetError, match=r"missing required argument\(s\) \['root'\]"):
        build_dataset("us8k")
