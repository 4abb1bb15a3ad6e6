"""``seg2sat synthesize --filter-with MODEL`` (FreeMask's lesson): a segmentation model scores each image against its
mask, writes an ignore mask, ``--min-score`` drops images, ``--hard-first`` spends more of the budget on hard masks.

The model is a real ``transformers`` SegFormer (tiny, random weights) loaded from a folder like a user's; the rule
and the planner are checked on constructed numbers where the right answer is known."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import torch
from conftest import striped_ids
from PIL import Image
from rasterio.transform import from_origin

from seg2sat import masks
from seg2sat.cli import main
from seg2sat.gis import raster
from seg2sat.synth.filter import IGNORE, UNSCORED, Filter, FilterError, ignore_rule, label_map, mean_iou
from seg2sat.synth.hardness import allocate

SIDE = 64
PROCEDURAL = ["--backend", "procedural", "--quiet"]


@pytest.fixture(scope="session")
def segformer(tmp_path_factory):
    """The tiny FLAIR SegFormer with its classifier scaled up: random but confident, so its loss varies from
    pixel to pixel as a trained model's does (the plain one's logits are all but flat)."""
    from transformers import AutoModelForSemanticSegmentation

    from seg2sat.testing.segformer import build_tiny_segformer

    folder = build_tiny_segformer(tmp_path_factory.mktemp("segformer") / "model")
    model = AutoModelForSemanticSegmentation.from_pretrained(folder)
    with torch.no_grad():
        model.decode_head.classifier.weight.mul_(2000)
    model.save_pretrained(folder)
    return folder



@pytest.fixture
def mask_dir(tmp_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    for k in range(3):
        masks.to_image(striped_ids(k)).save(folder / f"m{k}.png")
    return folder


def _load(out):
    from datasets import load_dataset

    return load_dataset(str(out), split="train")


def _run(capsys, *argv) -> tuple[str, str]:
    capsys.readouterr()
    code = main(["synthesize", *map(str, argv), *PROCEDURAL])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out, captured.err


def _error(capsys, *argv) -> str:
    capsys.readouterr()
    assert main(["synthesize", *map(str, argv), *PROCEDURAL]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_the_rule_ignores_pixels_far_above_their_class_mean_that_the_model_gets_wrong():
    target = torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1], [UNSCORED, UNSCORED, 1, 1]])
    loss = torch.tensor([[1.0, 1.0, 1.0, 3.0],  # class 0: mean 1.5, so 3.0 > 1.875 is far above it
                         [0.1, 0.1, 0.1, 0.1],  # class 1: mean (0.4 + 2.0 + 0.5) / 6 = 0.483; 0.61 is the limit
                         [9.0, 9.0, 2.0, 0.5]])  # unscored pixels never count
    predicted = torch.tensor([[0, 0, 0, 5], [1, 1, 1, 1], [3, 3, 1, 2]])
    ignore = ignore_rule(loss, target, predicted, margin=1.25)
    want = torch.zeros_like(target, dtype=torch.bool)
    want[0, 3] = True  # loss 3.0, predicted 5: ignored
    # (2, 2): loss 2.0 is far above class 1's mean, but the model predicts class 1 there: kept
    assert torch.equal(ignore, want)
    predicted[2, 2] = 4
    assert ignore_rule(loss, target, predicted, margin=1.25)[2, 2]
    assert not ignore_rule(loss, target, predicted, margin=5.0).any()  # a wide margin keeps every pixel
    assert mean_iou(target, target) == 1.0
    assert mean_iou(target, predicted) == pytest.approx((3 / 4 + 4 / 6) / 2)  # class 0: 3 of 4; class 1: 4 of 6


def test_the_model_labels_are_matched_to_the_flair_classes():
    from seg2sat.classes import CLASSES

    shuffled = {k: c.name.upper().replace(" ", "_") for k, c in enumerate(reversed(CLASSES))}
    table = label_map(shuffled, 19)
    assert table[19] == 0 and table[1] == 18  # by name, whatever the order
    assert list(label_map({k: f"LABEL_{k}" for k in range(19)}, 19)[1:]) == list(range(19))  # FLAIR's order
    subset = label_map({0: "building", 1: "water"}, 2)
    assert table[0] == UNSCORED and subset[1] == 0 and subset[5] == 1 and subset[11] == UNSCORED
    with pytest.raises(FilterError, match="150 labels are not the 19 FLAIR classes"):
        label_map({k: ("wall", "floor", "sky")[k % 3] for k in range(150)}, 150)


def test_the_budget_goes_to_the_masks_scored_lowest():
    scores = {("easy", "k"): 0.9, ("hard", "k"): 0.1, ("middle", "k"): 0.5}
    counts = allocate(scores, 4)
    assert sum(counts.values()) == 12 and counts[("hard", "k")] > counts[("middle", "k")] > counts[("easy", "k")] >= 1
    assert allocate(dict(reversed(list(scores.items()))), 4) == counts  # the order they were read in does not matter
    assert set(allocate(scores, 1).values()) == {1}  # nothing to share out
    many = {(f"m{i:02d}", "k"): i / 40 for i in range(40)}
    counts = allocate(many, 5)
    assert sum(counts.values()) == 200 and min(counts.values()) >= 1
    assert counts[("m00", "k")] == max(counts.values()) >= 9 and counts[("m39", "k")] == 1  # ~2n-1 down to ~1
    ties = allocate({("a", "k"): 0.5, ("b", "k"): 0.5, ("c", "k"): 0.2}, 3)
    assert sorted(ties.values()) == [2, 3, 4] and ties[("c", "k")] == 4  # a and b share a rank; one is left over


def test_parquet_rows_carry_a_score_and_an_ignore_mask(tmp_path, mask_dir, segformer, capsys):
    out = tmp_path / "out"
    printed, _ = _run(capsys, mask_dir, "--out", out, "-n", "2", "--filter-with", segformer)
    ds = _load(out)
    assert ds.num_rows == 6 and {"score", "ignore"} <= set(ds.column_names)
    scorer = Filter(str(segformer))
    ignored = 0
    for row in ds:
        ignore = np.asarray(row["ignore"])
        assert row["ignore"].mode == "L" and ignore.shape == np.asarray(row["mask"]).shape
        assert set(np.unique(ignore)) <= {0, IGNORE} and 0 <= row["score"] <= 1
        again = scorer.score([row["image"]], [np.asarray(row["mask"])])[0]  # the model, run by hand on the row
        assert np.array_equal(again.ignore, ignore) and again.score == pytest.approx(row["score"])
        ignored += int((ignore == IGNORE).sum())
    assert 0 < ignored < ds.num_rows * SIDE * SIDE / 4  # some pixels, not most
    card = (out / "README.md").read_text()
    assert f"quality filter: `{segformer}`" in card and "1.25 ×" in card and "ignore_index=255" in card
    manifest = json.loads((out / "synthesize.json").read_text())
    assert manifest["filter"] == {"model": str(segformer), "margin": 1.25, "labels": 19, "min_score": None,
                                  "hard_first": False}
    assert "dropped" not in printed  # nothing is dropped without --min-score


def test_min_score_drops_images_and_a_rerun_does_not_remake_them(tmp_path, mask_dir, segformer, capsys):
    out = tmp_path / "none"
    printed, _ = _run(capsys, mask_dir, "--out", out, "-n", "2", "--filter-with", segformer, "--min-score", "0")
    assert "0 of 6 images dropped (score < 0)" in printed and _load(out).num_rows == 6
    scores = sorted(_load(out)["score"])
    out = tmp_path / "all"
    argv = [mask_dir, "--out", out, "-n", "2", "--filter-with", segformer, "--min-score", "1"]
    printed, _ = _run(capsys, *argv)  # only an image the model gets right everywhere scores 1
    assert "6 of 6 images dropped (score < 1)" in printed and f"{out}: 0 rows" in printed
    assert json.loads((out / "index.json").read_text())["dropped"] == 6
    assert "6 image(s) left out for a score below 1" in (out / "README.md").read_text()
    printed, err = _run(capsys, *argv)  # the same command again: the dropped images are not made again
    assert "made 0 images from 0 masks" in printed and "3 of 3 masks were already done" in err
    floor = (scores[2] + scores[3]) / 2  # between the third and the fourth score: three images go
    out = tmp_path / "some"
    printed, _ = _run(capsys, mask_dir, "--out", out, "-n", "2", "--filter-with", segformer, "--min-score", floor)
    assert f"3 of 6 images dropped (score < {floor:g})" in printed
    assert _load(out).num_rows == 3 and min(_load(out)["score"]) >= floor


def test_folder_and_geotiff_outputs_write_the_ignore_mask_beside_the_pair(tmp_path, mask_dir, segformer, capsys):
    out = tmp_path / "folder"
    _run(capsys, mask_dir, "--out", out, "--format", "folder", "--filter-with", segformer)
    assert sorted(p.name for p in (out / "ign").iterdir()) == ["IGN_m0_000.png", "IGN_m1_000.png", "IGN_m2_000.png"]
    lines = [json.loads(line) for line in (out / "img" / "metadata.jsonl").read_text().splitlines()]
    assert lines[0]["ignore"] == "../ign/IGN_m0_000.png" and 0 <= lines[0]["score"] <= 1
    assert Image.open(out / "ign" / "IGN_m0_000.png").size == (SIDE, SIDE)
    src = tmp_path / "flair"
    src.mkdir()
    grid = raster.Grid(SIDE, SIDE, "EPSG:2154", from_origin(843_000, 6_520_000, 0.2, 0.2))
    raster.write_classes(src / "MSK_1.tif", striped_ids(1), grid)
    out = tmp_path / "geotiff"
    _run(capsys, src, "--out", out, "--format", "geotiff", "--filter-with", segformer)
    with rasterio.open(out / "ign" / "IGN_1_000.tif") as ign, rasterio.open(out / "msk" / "MSK_1_000.tif") as msk:
        assert ign.crs == msk.crs and ign.transform == msk.transform and ign.count == 1
        assert set(np.unique(ign.read(1))) <= {0, IGNORE}


def _pure(folder, classes) -> None:
    folder.mkdir()
    for c in classes:
        masks.to_image(np.full((SIDE, SIDE), c, np.uint8)).save(folder / f"class{c:02d}.png")


def test_hard_first_gives_more_images_to_the_masks_the_model_gets_wrong(tmp_path, segformer, capsys):
    src = tmp_path / "masks"
    _pure(src, (1, 15, 17))  # one class each: the tiny model gets some far more right than others
    out = tmp_path / "out"
    argv = [src, "--out", out, "-n", "3", "--filter-with", segformer, "--hard-first"]
    printed, _ = _run(capsys, *argv)
    ds = _load(out)
    assert ds.num_rows == 9  # the budget of -n 3 over 3 masks, shared out again
    first = {r["source"]: r["score"] for r in ds if r["index"] == 0}
    assert len(set(first.values())) == 3, first  # three different scores: the order is known
    counts = {name: ds["source"].count(name) for name in first}
    by_score = sorted(first, key=first.get)
    assert counts[by_score[0]] > counts[by_score[1]] > counts[by_score[2]] >= 1, (first, counts)
    assert counts == {k[0]: v for k, v in allocate({(n, ""): s for n, s in first.items()}, 3).items()}
    for name in first:
        assert sorted(r["index"] for r in ds if r["source"] == name) == list(range(counts[name]))
    assert "`hard_first`: image 0 of every mask first" in (out / "README.md").read_text()
    printed, _ = _run(capsys, *argv)  # resumed: the plan is the same, nothing is missing
    assert "made 0 images" in printed


def _stop_after(calls: int):
    """The procedural renderer behind an engine that is killed after ``calls`` images."""
    from seg2sat.engine import Engine
    from seg2sat.settings import Settings

    engine = Engine(Settings())
    made = {"n": 0}
    real = engine.run

    def run(req, on_step=None, queue=True):
        if made["n"] == calls:
            raise KeyboardInterrupt
        made["n"] += 1
        return real(req, on_step, queue=queue)

    engine.run = run
    return engine


def test_a_hard_first_run_killed_in_its_second_pass_resumes_to_the_same_rows(tmp_path, segformer, capsys):
    from seg2sat.synth.run import Options, synthesize

    src = tmp_path / "masks"
    _pure(src, (1, 15, 17))
    straight = tmp_path / "straight"
    common = ["-n", "3", "--filter-with", segformer, "--hard-first", "--min-score", "0.1", "--shard-rows", "1"]
    _run(capsys, src, "--out", straight, *common)
    out = tmp_path / "killed"
    opts = Options(source=str(src), out=out, num_images=3, backend="procedural", shard_rows=1, progress=False,
                   filter_with=str(segformer), min_score=0.1, hard_first=True)
    with pytest.raises(KeyboardInterrupt):
        synthesize(opts, _stop_after(7))  # the 3 images 0, then 4 of the 6 the plan adds (3 + 2 + 1)
    printed, _ = _run(capsys, src, "--out", out, *common)
    assert "made 3 images from 2 masks" in printed  # the hardest mask's 3 were written before the kill

    def rows(out):
        return sorted((r["source"], r["index"], r["seed"], r["score"]) for r in _load(out))

    assert rows(out) == rows(straight) and len(rows(out)) + json.loads((out / "index.json").read_text())["dropped"] == 9


def test_bad_filter_input_is_one_line(tmp_path, mask_dir, tiny_dir, capsys):
    out = tmp_path / "out"
    err = _error(capsys, mask_dir, "--out", out, "--hard-first")
    assert err == "error: --hard-first: needs --filter-with MODEL, the model that finds the hard masks"
    assert "--min-score: needs --filter-with" in _error(capsys, mask_dir, "--out", out, "--min-score", "0.3")
    err = _error(capsys, mask_dir, "--out", out, "--filter-with", tmp_path / "missing")
    assert err == f"error: --filter-with: {tmp_path / 'missing'}: no such folder"
    err = _error(capsys, mask_dir, "--out", out, "--filter-with", tiny_dir)  # a diffusers pipeline
    assert "is not a transformers model folder (no config.json)" in err
    bert = tmp_path / "bert"
    from transformers import BertConfig

    BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
               intermediate_size=8).save_pretrained(bert)
    err = _error(capsys, mask_dir, "--out", out, "--filter-with", bert)
    assert f"{bert} is not a semantic-segmentation model (its config is a 'bert' model)" in err
    assert "--min-score: a score between 0 and 1 (the image's mean IoU), got 30" in _error(
        capsys, mask_dir, "--out", out, "--filter-with", bert, "--min-score", "30")
    assert not out.exists()  # nothing was written


def test_resume_refuses_to_mix_filtered_and_unfiltered_rows(tmp_path, mask_dir, segformer, capsys):
    out = tmp_path / "out"
    _run(capsys, mask_dir, "--out", out)
    err = _error(capsys, mask_dir, "--out", out, "--filter-with", segformer, "--resume")
    assert "was made without --filter-with" in err and "--overwrite" in err


@pytest.mark.slow
def test_hard_first_on_two_processes_gives_the_rows_of_one(tmp_path, segformer):
    """The plan is made from every process's scores: 2 processes write the same rows as 1."""
    src = tmp_path / "masks"
    _pure(src, (1, 5, 11, 15, 17))
    args = [str(src), "-n", "3", "--filter-with", str(segformer), "--hard-first", *PROCEDURAL]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, "-m", "seg2sat", "synthesize", *args, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
         "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "seg2sat", "synthesize", *args,
         "--out", str(tmp_path / "two")], capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    assert "over 2 process(es)" in two.stdout

    def rows(out):
        return sorted((r["source"], r["index"], r["seed"], r["score"], np.asarray(r["ignore"]).tobytes())
                      for r in _load(out))

    assert rows(tmp_path / "two") == rows(tmp_path / "one") and len(rows(tmp_path / "one")) == 15
