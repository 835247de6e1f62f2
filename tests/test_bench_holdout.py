"""bench.holdout and bench.rd's --photos: the held-out set really is held out, and is stable."""
from __future__ import annotations

import json

import pytest

from bench import holdout, rd


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
        rd.parse_args(["--photos", "somewhere", "--skip-classic"])
    args = rd.parse_args(["--photos", "somewhere"])
    assert args.published == ""                                     # Kodak's published curves do not apply


def test_an_empty_photo_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="python -m bench.holdout"):
        rd.photo_files(tmp_path, None)


def earlier_result(tmp_path, names, classic=True):
    rows = [{"q": 50, "image": n, "bytes": 100, "bpp": 1.0, "psnr": 30.0} for n in names]
    result = {"meta": {"classic": {"jpeg": {"command": "cjpeg", "settings": [50]}} if classic else "anchors file",
                       "tool_versions": {"libjpeg-turbo-progs": "2.1.5"}},
              "curves": {"jpeg": [{"q": 50, "bpp": 1.0, "psnr": 30.0}], "ssic": [{"q": 2, "bpp": 0.5, "psnr": 29.0}]},
              "per_image": {"jpeg": rows, "ssic": rows}}
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(result))
    return path


def test_classic_from_reuses_only_the_classic_curves_of_the_same_images(tmp_path):
    path = earlier_result(tmp_path, ["a.png", "b.png"])
    curves, rows, meta = rd.earlier_classic(path, ["a.png", "b.png"])
    assert list(curves) == list(rows) == ["jpeg"]                   # ssic is measured again, never reused
    assert meta["tool_versions"] == {"libjpeg-turbo-progs": "2.1.5"}
    with pytest.raises(SystemExit, match="other images"):
        rd.earlier_classic(path, ["a.png"])
    with pytest.raises(SystemExit, match="anchors"):
        rd.earlier_classic(earlier_result(tmp_path, ["a.png"], classic=False), ["a.png"])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SystemExit, match="not a result"):
        rd.earlier_classic(tmp_path / "bad.json", ["a.png"])


def test_classic_from_serves_photos_but_not_with_skip_classic():
    assert rd.parse_args(["--photos", "somewhere", "--classic-from", "x.json"]).classic_from.name == "x.json"
    with pytest.raises(SystemExit):
        rd.parse_args(["--classic-from", "x.json", "--skip-classic"])
