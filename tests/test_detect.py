"""Pre-analysis: registry, detectors, user regions, the block policy, the overlay.

Shared data (COCO subset, Kodak, YOLO models) is found through ``$SSIC_SHARED`` (default: the
``shared`` folder next to the repository); tests that need it skip without it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ssic_cli.detect import (DetectorInfo, available_detectors, build_group_mask,
                             default_detector_name, get_detector, register_detector)
from ssic_cli.detect import registry, yolo
from ssic_cli.detect.base import Region
from ssic_cli.detect.user import (read_names, regions_from_boxes, regions_from_coco,
                                  regions_from_label_map, rle_counts_from_string, rle_to_mask)
from ssic_cli.errors import DetectorUnavailable, SsicError
from ssic_cli.mask import (BACKGROUND, BLOCK_SIZES, GroupMask, block_pixel_counts, grid_shape,
                           mask_block_counts, region_pixels, regions_to_group_mask)
from ssic_cli.overlay import render_overlay

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SSIC_SHARED", Path(__file__).resolve().parents[2] / "shared"))
MODELS = Path(os.environ.get("SSIC_MODELS", SHARED / "models"))
COCO = SHARED / "data" / "coco"
COCO_JSON = COCO / "instances.json"
KODAK = SHARED / "data" / "kodak"
SEG_MODEL = MODELS / "yolov8n-seg_int8.tflite"
DET_MODEL = MODELS / "yolov8n_int8.tflite"

needs_coco = pytest.mark.skipif(not COCO_JSON.exists(), reason=f"no COCO subset at {COCO}")


def _yolo_ready(path: Path) -> bool:
    return path.exists() and yolo.check_runtime(str(path))[0]


needs_seg = pytest.mark.skipif(not _yolo_ready(SEG_MODEL), reason=f"no {SEG_MODEL} or its runtime")
needs_det = pytest.mark.skipif(not _yolo_ready(DET_MODEL), reason=f"no {DET_MODEL} or its runtime")


# ------------------------------------------------------------------------------------ helpers

def load_rgb(path) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def coco():
    if not COCO_JSON.exists():
        pytest.skip(f"no COCO subset at {COCO}")
    return json.loads(COCO_JSON.read_text())


def coco_regions(coco, file_name):
    img = load_rgb(COCO / "images" / file_name)
    h, w = img.shape[:2]
    return img, regions_from_coco(COCO_JSON, file_name, w, h, data=coco)


def pixel_groups(gm: GroupMask, width: int, height: int) -> np.ndarray:
    """Group index of every pixel (H x W)."""
    b = gm.block_size
    return np.repeat(np.repeat(gm.ids, b, axis=0), b, axis=1)[:height, :width]


def box(label, x0, y0, x1, y1, score=1.0, instance=0):
    return Region(label, (x0, y0, x1, y1), score, None, instance)


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No YOLO weights anywhere and no network: env cleared, empty cwd and Ultralytics config."""
    monkeypatch.delenv(yolo.ENV_WEIGHTS, raising=False)
    monkeypatch.setenv("SSIC_OFFLINE", "1")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics-config"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------------------------------ policy

def test_no_regions_is_one_background_group():
    gm = regions_to_group_mask([], 100, 70, block_size=32)
    assert gm.names == [BACKGROUND] and gm.ids.shape == grid_shape(100, 70, 32) == (3, 4)
    assert not gm.ids.any()


def test_block_counts_partial_edges():
    counts = block_pixel_counts(100, 70, 32)
    assert counts.sum() == 100 * 70
    assert counts[-1, -1] == (70 - 64) * (100 - 96)
    m = np.zeros((70, 100), bool)
    m[60:70, 90:100] = True
    c = mask_block_counts(m, 32)
    assert c.sum() == 100 and c[1, 2] == 4 * 6 and c[2, 3] == 6 * 4


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_any_overlap_claims_block_and_threshold_rejects(block_size):
    b = block_size
    # covers 4 pixels of block (0, 0) and the whole of block (0, 1)
    r = box("car", b - 2, 0, 2 * b, 2)
    gm = regions_to_group_mask([r], 3 * b, 2 * b, block_size=b)
    assert gm.names == [BACKGROUND, "car"]
    assert gm.ids[0].tolist() == [1, 1, 0] and not gm.ids[1].any()
    full = box("car", b - 2, 0, 2 * b, b)              # block 0: 2*b of b*b px; block 1: all
    gm = regions_to_group_mask([full], 3 * b, 2 * b, block_size=b, coverage=0.5)
    assert gm.ids[0].tolist() == [0, 1, 0]
    # coverage is "more than": a block covered exactly half is not claimed at 0.5
    half = box("car", 0, 0, b // 2, b)
    gm = regions_to_group_mask([half], 2 * b, b, block_size=b, coverage=0.5)
    assert gm.names == [BACKGROUND]


def test_coverage_uses_in_image_pixels_of_edge_blocks():
    # image 40 x 40, B = 32: the edge block holds 8 x 8 pixels; a 6 x 8 box covers 75 % of it
    r = box("dog", 34, 32, 40, 40)
    gm = regions_to_group_mask([r], 40, 40, block_size=32, coverage=0.7)
    assert gm.names == [BACKGROUND, "dog"] and gm.ids[1, 1] == 1


def test_masks_are_used_at_pixel_level():
    m = np.zeros((64, 96), bool)
    m[40, 70] = True                                   # one pixel in block (1, 2)
    r = Region("cat", (70, 40, 71, 41), 1.0, m)
    gm = regions_to_group_mask([r], 96, 64, block_size=32)
    assert gm.ids.tolist() == [[0, 0, 0], [0, 0, 1]]
    with pytest.raises(SsicError, match="mask"):
        regions_to_group_mask([Region("cat", (0, 0, 1, 1), 1.0, np.ones((10, 10), bool))], 96, 64)


def overlapping_people():
    # two persons sharing block column 1; A covers more of it than B
    a = box("person", 0, 0, 48, 32, score=0.9)           # blocks (0,0) full, (0,1) half
    b = box("person", 40, 0, 96, 32, score=0.8)          # blocks (0,1) 3/4, (0,2) full
    return [a, b]


def test_class_grouping_merges_overlapping_instances():
    gm = regions_to_group_mask(overlapping_people(), 128, 64, block_size=32)
    assert gm.names == [BACKGROUND, "person"]
    assert gm.ids.tolist() == [[1, 1, 1, 0], [0, 0, 0, 0]]


def test_instance_grouping_keeps_overlapping_instances_apart():
    gm = regions_to_group_mask(overlapping_people(), 128, 64, block_size=32, group_by="instance")
    assert gm.names == [BACKGROUND, "person", "person#2"]
    assert gm.labels == [BACKGROUND, "person", "person"]
    # instance 1 = highest score (A); the shared block goes to B, which covers more of it
    assert gm.ids.tolist() == [[1, 2, 2, 0], [0, 0, 0, 0]]


def test_explicit_instance_numbers_win_over_score():
    a, b = overlapping_people()
    a.instance, b.instance = 2, 1
    gm = regions_to_group_mask([a, b], 128, 64, block_size=32, group_by="instance")
    assert gm.ids.tolist()[0] == [2, 1, 1, 0]


def test_conflict_tie_goes_to_smaller_group_and_order_does_not_matter():
    big = box("person", 0, 0, 64, 32)                  # both cover block (0, 0) fully
    small = box("tie", 0, 0, 32, 32)
    gm1 = regions_to_group_mask([big, small], 64, 32, block_size=32)
    gm2 = regions_to_group_mask([small, big], 64, 32, block_size=32)
    assert gm1.names == gm2.names == ["person", "tie"]       # no block left: no background
    assert gm1.ids.tolist() == gm2.ids.tolist() == [[1, 0]]


def test_group_with_no_block_left_is_dropped():
    big = box("person", 0, 0, 64, 64)
    inside = box("person", 10, 10, 20, 20, score=0.5)  # instance 2, loses its only block
    gm = regions_to_group_mask([big, inside], 64, 64, block_size=32, group_by="instance")
    assert gm.names == ["person"] and not gm.ids.any()


def test_merge_overlaps_measures_union_coverage():
    # two regions of one class each cover 40 % of block (0, 0), together 80 %
    a = box("car", 0, 0, 32, 13)
    b = box("car", 0, 19, 32, 32)
    merged = regions_to_group_mask([a, b], 64, 32, block_size=32, coverage=0.5)
    apart = regions_to_group_mask([a, b], 64, 32, block_size=32, coverage=0.5, merge_overlaps=False)
    assert merged.ids.tolist() == [[1, 0]] and merged.names == [BACKGROUND, "car"]
    assert apart.names == [BACKGROUND]


def test_classes_filter_and_min_score():
    regions = [box("person", 0, 0, 32, 32, 0.9), box("car", 32, 0, 64, 32, 0.9),
               box("dog", 64, 0, 96, 32, 0.1)]
    gm = regions_to_group_mask(regions, 96, 32, block_size=32, classes=["person"])
    assert gm.names == [BACKGROUND, "person"] and gm.ids.tolist() == [[1, 0, 0]]
    gm = regions_to_group_mask(regions, 96, 32, block_size=32, classes="person, car")
    assert gm.names == [BACKGROUND, "car", "person"]
    gm = regions_to_group_mask(regions, 96, 32, block_size=32, min_score=0.25)
    assert gm.names == [BACKGROUND, "car", "person"]
    gm = regions_to_group_mask(regions, 96, 32, block_size=32)
    assert gm.names == ["car", "dog", "person"]


def test_cap_merges_smallest_into_other():
    # five classes with 5, 4, 3, 2, 1 blocks in a 16 x 1 block strip (one background block)
    regions, x = [], 0
    for label, n in zip("abcde", (5, 4, 3, 2, 1)):
        regions.append(box(label, x, 0, x + 32 * n, 32))
        x += 32 * n
    gm = regions_to_group_mask(regions, 32 * 16, 32, block_size=32, max_groups=4)
    assert gm.names == [BACKGROUND, "a", "b", "other"]
    counts = [gm.block_count(g) for g in range(gm.num_groups)]
    assert counts == [1, 5, 4, 3 + 2 + 1]
    gm = regions_to_group_mask(regions, 32 * 16, 32, block_size=32, max_groups=2)
    assert gm.names == [BACKGROUND, "other"]
    gm = regions_to_group_mask(regions, 32 * 16, 32, block_size=32, max_groups=1)
    assert gm.names == [BACKGROUND] and not gm.ids.any()


def test_full_coverage_means_fully_covered_blocks():
    r = box("car", 0, 0, 40, 32)
    gm = regions_to_group_mask([r], 64, 32, block_size=32, coverage=1.0)
    assert gm.ids.tolist() == [[1, 0]]


@pytest.mark.parametrize("kwargs", [dict(block_size=8), dict(coverage=1.5), dict(group_by="x"),
                                    dict(max_groups=0), dict(max_groups=256)])
def test_policy_rejects_bad_arguments(kwargs):
    with pytest.raises(SsicError):
        regions_to_group_mask([], 64, 64, **kwargs)


# ------------------------------------------------------------------ COCO ground truth policy

def coco_sample(coco, n=20):
    images = [im for im in coco["images"]
              if any(a["image_id"] == im["id"] for a in coco["annotations"])]
    step = max(1, len(images) // n)
    return [im["file_name"] for im in images[::step][:n]]


@needs_coco
@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_coco_every_annotated_pixel_is_in_its_group(coco, block_size):
    """For each kept class alone (class and instance grouping) every pixel of it lies in a block
    of its group; with all classes kept, no annotated pixel is left in background."""
    checked = 0
    for fn in coco_sample(coco):
        img, regions = coco_regions(coco, fn)
        h, w = img.shape[:2]
        areas = {}
        for r in regions:
            areas[r.label] = areas.get(r.label, 0) + int(region_pixels(r, w, h).sum())
        kept = sorted(areas, key=lambda c: -areas[c])[:2]
        for cls in kept:
            gm = regions_to_group_mask(regions, w, h, block_size=block_size, classes=[cls],
                                       min_score=0.0)
            groups = pixel_groups(gm, w, h)
            g = gm.index_of(cls)
            for r in regions:
                if r.label == cls:
                    assert (groups[region_pixels(r, w, h)] == g).all(), (fn, cls, block_size)
                    checked += 1
        gm = regions_to_group_mask(regions, w, h, block_size=block_size, max_groups=255)
        groups = pixel_groups(gm, w, h)
        fg = np.zeros((h, w), bool)
        for r in regions:
            fg |= region_pixels(r, w, h)
        if BACKGROUND in gm.names:
            assert not (groups[fg] == gm.index_of(BACKGROUND)).any(), (fn, block_size)
    assert checked >= 20


@needs_coco
def test_coco_instance_grouping_names_and_masks(coco):
    img, regions = coco_regions(coco, "000000184324.jpg")
    h, w = img.shape[:2]
    n_person = sum(r.label == "person" for r in regions)
    gm = regions_to_group_mask(regions, w, h, block_size=16, group_by="instance",
                               classes=["person"], max_groups=255)
    persons = [n for n in gm.names if n.split("#")[0] == "person"]
    assert 2 <= len(persons) <= n_person and persons[0] == "person" and "person#2" in persons
    assert gm.names[0] == BACKGROUND


@needs_coco
def test_coco_crowd_rle_and_polygons_decode(coco):
    by_id = {im["id"]: im for im in coco["images"]}
    crowd = [a for a in coco["annotations"] if a["iscrowd"]][:5]
    for a in crowd:
        im = by_id[a["image_id"]]
        m = rle_to_mask(a["segmentation"], im["height"], im["width"])
        assert m.shape == (im["height"], im["width"])
        assert int(m.sum()) == sum(a["segmentation"]["counts"][1::2])
        x, y, bw, bh = a["bbox"]                       # orientation: the mask fills its bbox
        ys, xs = np.nonzero(m)
        assert abs(xs.min() - x) <= 1 and abs(ys.min() - y) <= 1
        assert abs(xs.max() + 1 - (x + bw)) <= 1 and abs(ys.max() + 1 - (y + bh)) <= 1
    img, regions = coco_regions(coco, "000000000139.jpg")
    ann = [a for a in coco["annotations"] if a["image_id"] == 139 and not a["iscrowd"]]
    assert len(regions) == len(ann)
    total = sum(int(r.mask.sum()) for r in regions)
    assert 0.9 < total / sum(a["area"] for a in ann) < 1.35     # fill includes boundary pixels


def rle_to_string(counts):
    """pycocotools' rleToString, to test the decoder against."""
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def test_compressed_rle_matches_uncompressed():
    rng = np.random.default_rng(0)
    counts = [int(v) for v in rng.integers(0, 200, size=50)]
    assert rle_counts_from_string(rle_to_string(counts)) == counts
    h, w = 10, sum(counts) // 10 + 1
    counts.append(h * w - sum(counts))
    a = rle_to_mask({"size": [h, w], "counts": counts}, h, w)
    b = rle_to_mask({"size": [h, w], "counts": rle_to_string(counts)}, h, w)
    assert (a == b).all()
    with pytest.raises(SsicError):
        rle_to_mask({"size": [h, w], "counts": counts[:-1]}, h, w)


# ------------------------------------------------------------------------------ user input

def test_label_map_with_json_and_text_names(tmp_path):
    from PIL import Image
    ids = np.zeros((40, 60), np.uint8)
    ids[0:20, 0:20] = 1
    ids[20:40, 40:60] = 2
    ids[0:10, 50:60] = 7
    Image.fromarray(ids).save(tmp_path / "labels.png")
    (tmp_path / "names.json").write_text(json.dumps({"1": "person", "2": "person", "0": "background"}))
    (tmp_path / "names.txt").write_text("# id name\n1 person\n2 car\n0 floor\n")
    regions = regions_from_label_map(tmp_path / "labels.png", tmp_path / "names.json", 60, 40)
    assert [(r.label, r.instance) for r in regions] == [("person", 1), ("person", 2), ("region7", 1)]
    assert regions[0].mask.sum() == 400 and regions[0].box == (0, 0, 20, 20)
    regions = regions_from_label_map(tmp_path / "labels.png", tmp_path / "names.txt", 60, 40)
    assert [r.label for r in regions] == ["floor", "person", "car", "region7"]
    assert read_names(tmp_path / "names.txt") == {1: "person", 2: "car", 0: "floor"}
    with pytest.raises(SsicError, match="60x40"):
        regions_from_label_map(tmp_path / "labels.png", None, 64, 40)
    (tmp_path / "bad.txt").write_text("one person\n")
    with pytest.raises(SsicError, match="bad.txt:1"):
        read_names(tmp_path / "bad.txt")


def test_label_map_to_groups(tmp_path):
    from PIL import Image
    ids = np.zeros((64, 96), np.uint16)
    ids[0:32, 0:32] = 300                         # 16-bit ids work
    Image.fromarray(ids).save(tmp_path / "l16.png")
    (tmp_path / "n.json").write_text('{"300": "sign"}')
    img = np.zeros((64, 96, 3), np.uint8)
    gm = build_group_mask(img, mask_path=tmp_path / "l16.png", names_path=tmp_path / "n.json", block_size=32,
                          log=None)
    assert gm.names == [BACKGROUND, "sign"] and gm.ids.tolist() == [[1, 0, 0], [0, 0, 0]]
    default = build_group_mask(img, mask_path=tmp_path / "l16.png", names_path=tmp_path / "n.json", log=None)
    assert default.block_size == 16 and default.ids.shape == (4, 6) and default.ids[:2, :2].tolist() == [[1, 1], [1, 1]]


def test_boxes_json(tmp_path):
    p = tmp_path / "boxes.json"
    p.write_text(json.dumps([{"label": "car", "box": [10.5, 0, 40, 20], "score": 0.7},
                             {"label": "car", "box": [-5, -5, 500, 8]},
                             {"label": "far", "box": [900, 900, 950, 950]}]))
    regions = regions_from_boxes(p, 64, 32)
    assert [(r.label, r.box, r.score, r.instance) for r in regions] == [
        ("car", (10, 0, 40, 20), 0.7, 1), ("car", (0, 0, 64, 8), 1.0, 2)]
    for bad in ([{"label": "x"}], [{"label": "x", "box": [1, 2, 3]}], [{"label": "x", "box": [5, 0, 1, 4]}],
                {"nope": 1}):
        p.write_text(json.dumps(bad))
        with pytest.raises(SsicError):
            regions_from_boxes(p, 64, 32)
    p.write_text("{not json")
    with pytest.raises(SsicError, match="not valid JSON"):
        regions_from_boxes(p, 64, 32)


@needs_coco
def test_coco_picks_image_by_name_and_checks_size(coco):
    img, regions = coco_regions(coco, "000000000139.jpg")
    h, w = img.shape[:2]
    gm = build_group_mask(img, coco_path=COCO_JSON, image_name="some/dir/000000000139.jpg", log=None)
    assert "person" in gm.names and gm.names[0] == BACKGROUND
    with pytest.raises(SsicError, match="no image named"):
        regions_from_coco(COCO_JSON, "nope.jpg", w, h, data=coco)
    with pytest.raises(SsicError, match="annotates"):
        regions_from_coco(COCO_JSON, "000000000139.jpg", w + 1, h, data=coco)
    with pytest.raises(SsicError, match="say which one"):
        regions_from_coco(COCO_JSON, None, w, h, data=coco)


# ------------------------------------------------------------------------------- registry

def test_registry_lists_builtins_without_heavy_imports():
    code = ("import sys; from ssic_cli.detect import available_detectors, default_detector_name;"
            "infos = available_detectors(); default_detector_name();"
            "print(sorted(i.name for i in infos));"
            "print([m for m in ('cv2', 'ultralytics', 'torch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert out.returncode == 0, out.stderr
    names, heavy = out.stdout.strip().splitlines()
    assert {"yolo", "saliency", "people", "faces", "grid"} <= set(eval(names))
    assert heavy == "[]"


def test_registry_errors_and_custom_detector(monkeypatch):
    infos = {i.name: i for i in available_detectors()}
    assert isinstance(infos["grid"], DetectorInfo) and infos["grid"].available
    with pytest.raises(SsicError, match="unknown detector 'nope'.*grid"):
        get_detector("nope")
    with pytest.raises(SsicError, match="rows, cols"):
        get_detector("grid", depth=3)
    with pytest.raises(SsicError, match="integer"):
        get_detector("grid", rows="many")
    assert get_detector("grid", rows="3").rows == 3        # strings from the command line work

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_detector("everything", "one region covering the image")
    class Everything:
        name = "everything"

        def detect(self, image):
            return [Region("thing", (0, 0, image.shape[1], image.shape[0]))]

    assert Everything.__name__ == "Everything"              # decorator returns it unchanged
    gm = build_group_mask(np.zeros((64, 64, 3), np.uint8), detector="everything", log=None)
    assert gm.names == ["thing"]


def test_entry_point_plugins(monkeypatch):
    from importlib.metadata import EntryPoint
    eps = [EntryPoint("tiles3", "ssic_cli.detect.grid:make_grid", registry.ENTRY_POINT_GROUP),
           EntryPoint("broken", "no_such_module_xyz:make", registry.ENTRY_POINT_GROUP),
           EntryPoint("grid", "no_such_module_xyz:make", registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_entry_point_errors", {})
    monkeypatch.setattr(registry, "_loaded", {"builtins": True, "entry_points": False})
    monkeypatch.setattr(registry, "_entry_points", lambda: eps)
    infos = {i.name: i for i in available_detectors()}
    assert infos["tiles3"].available and infos["grid"].available      # built-in grid wins
    assert not infos["broken"].available and "no_such_module_xyz" in infos["broken"].reason
    assert get_detector("tiles3", rows=3, cols=1).detect(np.zeros((30, 10, 3), np.uint8))[2].box == (0, 20, 10, 30)
    with pytest.raises(DetectorUnavailable, match="cannot load"):
        get_detector("broken")


# ------------------------------------------------------------------ offline behaviour, default

def test_yolo_without_weights_offline_fails_fast(offline):
    t = time.perf_counter()
    with pytest.raises(DetectorUnavailable) as exc:
        get_detector("yolo")
    assert time.perf_counter() - t < 5
    msg = str(exc.value)
    assert "SSIC_YOLO_WEIGHTS" in msg and "--detector-weights" in msg and "\n" not in msg
    with pytest.raises(DetectorUnavailable, match="not found"):
        get_detector("yolo", weights=str(offline / "missing" / "w.pt"))
    with pytest.raises(DetectorUnavailable, match="no network"):
        get_detector("yolo", weights="yolov8s-seg.pt")


def test_network_probe_is_bounded(monkeypatch):
    monkeypatch.delenv("SSIC_OFFLINE", raising=False)
    monkeypatch.delenv("YOLO_OFFLINE", raising=False)
    t = time.perf_counter()
    yolo.network_reachable(timeout=1.0, host="10.255.255.1", port=9)   # unroutable: times out
    assert time.perf_counter() - t < 2.5


def test_tflite_without_litert_fails_before_ultralytics(offline, monkeypatch):
    w = offline / "model.tflite"
    w.write_bytes(b"not really a model")
    real = yolo.has_module
    monkeypatch.setattr(yolo, "has_module", lambda m: False if m == "ai_edge_litert" else real(m))
    with pytest.raises(DetectorUnavailable, match="pip install ai-edge-litert"):
        get_detector("yolo", weights=str(w))
    monkeypatch.setenv(yolo.ENV_WEIGHTS, str(w))
    name, reason = default_detector_name()
    assert name != "yolo" and "ai-edge-litert" in reason


def test_default_falls_back_and_says_so(offline):
    name, reason = default_detector_name()
    assert name == "saliency" and "SSIC_YOLO_WEIGHTS" in reason
    lines = []
    img = load_rgb(KODAK / "kodim04.png") if (KODAK / "kodim04.png").exists() else \
        np.random.default_rng(0).integers(0, 255, (128, 192, 3), dtype=np.uint8)
    gm = build_group_mask(img, log=lines.append)
    assert len(lines) == 1 and "saliency" in lines[0] and "YOLO" in lines[0]
    assert gm.names[0] == BACKGROUND


def test_build_group_mask_argument_errors(tmp_path):
    img = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(SsicError, match="label map"):
        build_group_mask(img, names_path=tmp_path / "n.json", log=None)
    with pytest.raises(SsicError, match="no weights"):
        build_group_mask(img, detector="grid", weights="w.pt", log=None)
    with pytest.raises(SsicError, match="RGB uint8"):
        build_group_mask(np.zeros((32, 32), np.uint8), log=None)


def test_boxes_and_detector_combine(tmp_path):
    p = tmp_path / "b.json"
    p.write_text(json.dumps([{"label": "car", "box": [0, 0, 16, 16]}]))   # ties with tile 1: smaller wins
    lines = []
    gm = build_group_mask(np.zeros((64, 64, 3), np.uint8), boxes_path=p, detector="grid",
                          group_by="instance", block_size=16, log=lines.append)
    assert "boxes b.json + detector grid" in lines[0]
    assert gm.names == ["car", "tile", "tile#2", "tile#3", "tile#4"]


# -------------------------------------------------------------------- weight-free detectors

def test_grid_tiles_align_to_blocks():
    img = np.zeros((100, 150, 3), np.uint8)
    lines = []
    gm = build_group_mask(img, detector="grid", detector_options={"rows": 3, "cols": 2},
                          block_size=16, log=lines.append)            # grid -> instance groups
    assert gm.names == ["tile"] + [f"tile#{k}" for k in range(2, 7)]
    assert [gm.block_count(g) for g in range(6)] == [gm.block_count(0)] * 2 + [gm.block_count(2)] * 2 + \
        [gm.block_count(4)] * 2
    regions = get_detector("grid", rows=2, cols=2, align=32).detect(img)
    assert [r.box for r in regions] == [(0, 0, 64, 64), (64, 0, 150, 64), (0, 64, 64, 100), (64, 64, 150, 100)]


@needs_coco
def test_people_finds_people(coco):
    det = get_detector("people")
    for fn in ("000000217285.jpg", "000000184324.jpg"):
        img, gt = coco_regions(coco, fn)
        found = det.detect(img)
        assert found and all(r.label == "person" and 0 < r.score <= 1 for r in found)
        gt_person = [r.box for r in gt if r.label == "person"]
        assert max(iou(r.box, g) for r in found for g in gt_person) > 0.4, fn


@needs_coco
def test_faces_finds_faces(coco):
    det = get_detector("faces")
    for fn in ("000000241668.jpg", "000000253956.jpg"):
        img, gt = coco_regions(coco, fn)
        found = det.detect(img)
        assert found and found[0].label == "face"
        x0, y0, x1, y1 = found[0].box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        # the best face sits in the upper half of an annotated person
        assert any(g[0] <= cx <= g[2] and g[1] <= cy <= (g[1] + g[3]) / 2
                   for g in (r.box for r in gt if r.label == "person")), fn
    if (KODAK / "kodim04.png").exists():
        faces = det.detect(load_rgb(KODAK / "kodim04.png"))
        assert len(faces) == 1
        x0, y0, x1, y1 = faces[0].box
        assert 150 < (x0 + x1) / 2 < 380 and 250 < (y0 + y1) / 2 < 500


@needs_coco
def test_saliency_prefers_objects(coco):
    det = get_detector("saliency")
    better = total = 0
    for fn in coco_sample(coco, 16):
        img, gt = coco_regions(coco, fn)
        h, w = img.shape[:2]
        found = det.detect(img)
        assert len(found) <= 3
        if not found:
            continue
        fg = np.zeros((h, w), bool)
        for r in gt:
            fg |= region_pixels(r, w, h)
        sal = np.zeros((h, w), bool)
        for r in found:
            assert r.label == "salient" and r.mask.shape == (h, w) and 0 < r.score <= 1
            x0, y0, x1, y1 = r.box
            assert r.mask[y0:y1, x0:x1].sum() == r.mask.sum()
            sal |= r.mask
        assert sal.mean() < 0.5
        total += 1
        better += fg[sal].mean() > fg.mean()
    assert total >= 12 and better / total >= 0.55


# --------------------------------------------------------------------------------- overlay

def test_render_overlay_tints_groups_only():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (128, 192, 3), dtype=np.uint8)
    ids = np.zeros((2, 3), np.uint8)
    ids[:, 2] = 1
    ids[1, 0] = 2
    gm = GroupMask(64, ids, [BACKGROUND, "person", "car"])
    out = np.asarray(render_overlay(img, gm))
    assert out.shape == img.shape
    same = (out == img).all(axis=2)
    assert same[0:64, 0:128].mean() > 0.85                  # background: grid line and label only
    assert same[0:128, 128:192].mean() < 0.2                # person tinted
    assert same[64:128, 0:64].mean() < 0.2                  # car tinted
    with pytest.raises(SsicError):
        render_overlay(img[:60], gm)


# ------------------------------------------------------------------------------------ YOLO

@pytest.fixture(scope="module")
def seg_detector():
    return get_detector("yolo", weights=str(SEG_MODEL), threads=2)


@needs_seg
@needs_coco
def test_yolo_seg_regions_and_default(seg_detector, coco, monkeypatch):
    img, _ = coco_regions(coco, "000000000139.jpg")
    h, w = img.shape[:2]
    found = seg_detector.detect(img)
    assert seg_detector.task == "segment"
    persons = [r for r in found if r.label == "person"]
    assert persons and persons[0].instance == 1
    for r in found:
        assert r.mask is None or r.mask.shape == (h, w)
        assert 0 <= r.box[0] < r.box[2] <= w and 0 <= r.box[1] < r.box[3] <= h
    assert any(r.mask is not None for r in found)
    monkeypatch.setenv(yolo.ENV_WEIGHTS, str(SEG_MODEL))
    assert default_detector_name()[0] == "yolo"
    lines = []
    gm = build_group_mask(img, log=lines.append, group_by="instance")
    assert "detector yolo" in lines[0] and "person" in gm.names


@needs_det
@needs_coco
def test_yolo_detection_weights_give_boxes(coco):
    img, _ = coco_regions(coco, "000000000139.jpg")
    det = get_detector("yolo", weights=str(DET_MODEL))
    found = det.detect(img)
    assert det.task == "detect" and found and all(r.mask is None for r in found)
    assert any(r.label == "person" for r in found)


@needs_seg
@needs_coco
def test_yolo_seg_finds_people_in_coco(seg_detector, coco):
    """Persons found in >= 80 % of the shared COCO images with an annotated person > 32 x 32."""
    ids = {a["image_id"] for a in coco["annotations"]
           if a["category_id"] == 1 and not a["iscrowd"] and a["bbox"][2] > 32 and a["bbox"][3] > 32}
    files = [im["file_name"] for im in coco["images"] if im["id"] in ids]
    assert len(files) > 100
    hits = 0
    for fn in files:
        img = load_rgb(COCO / "images" / fn)
        hits += any(r.label == "person" for r in seg_detector.detect(img))
    assert hits / len(files) >= 0.8, f"{hits}/{len(files)}"


def test_detector_none_means_user_regions_only(tmp_path):
    img = np.zeros((64, 64, 3), np.uint8)
    gm = build_group_mask(img, detector="none", log=None)
    assert gm.names == [BACKGROUND]
    p = tmp_path / "b.json"
    p.write_text(json.dumps([{"label": "car", "box": [0, 0, 10, 10]}]))
    lines = []
    gm = build_group_mask(img, detector="none", boxes_path=p, log=lines.append)
    assert gm.names == [BACKGROUND, "car"] and "detector" not in lines[0]


def test_float_boxes_grow_to_whole_pixels():
    r = Region("car", (31.5, 0.2, 32.2, 10.0))       # third-party float box touching two blocks
    gm = regions_to_group_mask([r], 96, 32, block_size=32)
    assert gm.ids.tolist() == [[1, 1, 0]]
    with pytest.raises(SsicError, match="finite"):
        regions_to_group_mask([Region("car", (float("nan"), 0, 1, 1))], 96, 32)


def test_label_map_that_is_a_photo_is_refused(tmp_path):
    from PIL import Image
    noise = np.random.default_rng(0).integers(0, 65535, (80, 80), dtype=np.uint16)
    Image.fromarray(noise).save(tmp_path / "photo16.png")
    with pytest.raises(SsicError, match="distinct ids"):
        regions_from_label_map(tmp_path / "photo16.png", None, 80, 80)
    rgb = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    with pytest.raises(SsicError, match="colour"):
        regions_from_label_map(tmp_path / "colour.png", None, 8, 8)


# ------------------------------------------------------------ priority classes (what is sealed)

def _small_person_on_a_car() -> list[Region]:
    """A 96×64 car box; a 20×24 person mask overlapping its middle blocks (each of the person's
    blocks is covered more by the car than by the person)."""
    person = np.zeros((64, 96), bool)
    person[20:44, 38:58] = True
    return [Region("car", (0, 0, 96, 64), 0.9), Region("person", (38, 20, 58, 44), 0.8, person)]


def test_a_region_whose_blocks_all_go_to_another_group_is_reported_not_dropped(monkeypatch):
    gm = regions_to_group_mask(_small_person_on_a_car(), 96, 64, block_size=16)
    assert "person" not in gm.names and gm.merged == {"person": "car"}
    import ssic_cli.detect as det
    monkeypatch.setattr(det, "detect_regions", lambda *a, **k: _small_person_on_a_car())
    lines = []
    build_group_mask(np.zeros((64, 96, 3), np.uint8), detector="saliency", block_size=16, log=lines.append)
    assert "person merged into car" in lines[0]


def test_priority_class_claims_every_block_it_touches_and_wins_conflicts():
    regions = _small_person_on_a_car()
    for coverage in (0.0, 0.5, 1.0):
        gm = regions_to_group_mask(regions, 96, 64, block_size=16, coverage=coverage, priority={"person"})
        groups = pixel_groups(gm, 96, 64)
        person = gm.index_of("person")
        assert (groups[regions[1].mask] == person).all() and not gm.merged
        touched = mask_block_counts(regions[1].mask, 16) > 0
        assert np.array_equal(gm.ids == person, touched)              # exactly the touched blocks


@needs_coco
@pytest.mark.parametrize("block_size", (16, 32))
def test_sealing_person_leaves_no_annotated_person_pixel_visible(coco, block_size):
    """Over every shared COCO image with a person: with `person` as a priority class (what
    --seal person does), no annotated person pixel lies in a block of a non-person group, even
    at coverage 0.5 and grouped by instance. The old rule (largest coverage wins) leaked."""
    with_person = {a["image_id"] for a in coco["annotations"] if a["category_id"] == 1}
    files = [im["file_name"] for im in coco["images"] if im["id"] in with_person]
    visible = leaked_before = total = 0
    for fn in files:
        img, regions = coco_regions(coco, fn)
        h, w = img.shape[:2]
        person = np.zeros((h, w), bool)
        for r in regions:
            if r.label == "person":
                person |= region_pixels(r, w, h)
        total += int(person.sum())
        for prio, coverage, group_by in ((None, 0.0, "instance"), ({"person"}, 0.5, "instance"),
                                         ({"person"}, 0.0, "class")):
            gm = regions_to_group_mask(regions, w, h, block_size=block_size, coverage=coverage, group_by=group_by,
                                       priority=prio, max_groups=255)
            labels = np.asarray(gm.labels)[pixel_groups(gm, w, h)]
            shown = int((person & (labels != "person")).sum())
            if prio:
                visible += shown
            else:
                leaked_before += shown
    assert len(files) >= 100 and total > 0
    assert visible == 0
    assert leaked_before > 0, "the old rule no longer leaks: this test would prove nothing"
