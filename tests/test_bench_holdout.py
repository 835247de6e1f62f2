"""bench/holdout.py and rd_kodak's --photos: the held-out set really is held out, and is stable."""
from __future__ import annotations

import sys

import pytest

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import holdout  # noqa: E402  (bench/ is scripts, not a package)
import rd_kodak  # noqa: E402


def image(i, split="val2017", w=640, h=480):
    return {"id": i, "file_name": f"{i:012d}.jpg", "coco_split": split, "width": w, "height": h, "license": 4}


def test_pick_takes_only_eligible_val_photos_never_a_training_source():
    images = [image(i) for i in range(1, 61)] + [image(100 + i, "train2017") for i in range(30)]
    images += [image(200, h=300)]                                   # too small
    trained_on = {f"val2017/{i:012d}.jpg" for i in range(1, 11)}
    chosen = holdout.pick({"images": images}, trained_on)
    ids = [im["id"] for im in chosen]
    assert len(ids) == holdout.COUNT == len(set(ids))
    assert all(11 <= i <= 60 for i in ids)
    assert ids == sorted(ids)
    assert holdout.pick({"images": list(reversed(images))}, trained_on) == chosen    # order-free


def test_pick_refuses_a_set_too_small_to_hold_out():
    with pytest.raises(SystemExit, match="eligible"):
        holdout.pick({"images": [image(i) for i in range(5)]}, set())


def test_training_sources_reads_every_manifest_below(tmp_path):
    (tmp_path / "more").mkdir()
    header = "file\tsource_repo\toriginal_path\n"
    (tmp_path / "MANIFEST.tsv").write_text(header + "a.jpg\trepo\ttrain2017/000000000009.jpg\n")
    (tmp_path / "more" / "MANIFEST.tsv").write_text(header + "b.jpg\trepo\tval2017/000000000139.jpg\n")
    assert holdout.training_sources(tmp_path) == {"train2017/000000000009.jpg", "val2017/000000000139.jpg"}


def test_photos_need_the_classic_encoders_run_here():
    with pytest.raises(SystemExit):
        rd_kodak.parse_args(["--photos", "somewhere", "--skip-classic"])
    args = rd_kodak.parse_args(["--photos", "somewhere"])
    assert args.published == ""                                     # Kodak's published curves do not apply


def test_an_empty_photo_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="bench/holdout.py"):
        rd_kodak.photo_files(tmp_path, None)
