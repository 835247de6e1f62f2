"""Pre-analysis (``ssic_cli.detect``): registry, detectors, the default detector and its notices,
user regions, the overlay. The block policy's tests are in test_mask.py.

Shared data (COCO subset, YOLO models) is found through ``$SSIC_SHARED``; tests that need it skip
without it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ssic_cli.detect import (DetectorInfo, RegionSources, available_detectors, build_group_mask,
                             choose_detector, default_detector_name, get_detector, register_detector)
from ssic_cli.detect import registry, yolo
from ssic_cli.detect.base import Region
from ssic_cli.detect.user import (read_names, regions_from_boxes, regions_from_coco,
                                  regions_from_label_map, rle_counts_from_string, rle_to_mask)
from ssic_cli.errors import DetectorUnavailable, SsicError
from ssic_cli.mask import BACKGROUND, GroupMask, region_pixels
from ssic_cli.overlay import render_overlay

from .shared_data import (COCO, COCO_JSON, KODAK, MODELS, REPO, coco_regions, coco_sample, load_coco, load_rgb,
                          needs_coco)

SEG_MODEL = MODELS / "yolov8n-seg_int8.tflite"
DET_MODEL = MODELS / "yolov8n_int8.tflite"


def _yolo_ready(path: Path) -> bool:
    return path.exists() and yolo.check_runtime(str(path))[0]


needs_seg = pytest.mark.skipif(not _yolo_ready(SEG_MODEL), reason=f"no {SEG_MODEL} or its runtime")
needs_det = pytest.mark.skipif(not _yolo_ready(DET_MODEL), reason=f"no {DET_MODEL} or its runtime")


@pytest.fixture(scope="module")
def coco():
    return load_coco()


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
    monkeypatch.setenv("SSIC_CACHE_DIR", str(tmp_path / "ssic-cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path



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

def test_yolo_without_weights_offline_fails_fast(offline, monkeypatch):
    probes = []
    monkeypatch.setattr(yolo.socket, "create_connection", lambda *a, **k: probes.append(a))
    with pytest.raises(DetectorUnavailable) as exc:
        get_detector("yolo")
    assert probes == []                                # SSIC_OFFLINE: not even a network probe
    msg = str(exc.value)
    assert "SSIC_YOLO_WEIGHTS" in msg and "--detector-weights" in msg and "\n" not in msg
    with pytest.raises(DetectorUnavailable, match="not found"):
        get_detector("yolo", weights=str(offline / "missing" / "w.pt"))
    with pytest.raises(DetectorUnavailable, match="no network"):
        get_detector("yolo", weights="yolov8s-seg.pt")


def test_network_probe_is_bounded(monkeypatch):
    """A stalled resolver or connect cannot hold the caller: the probe gives up without it."""
    import threading
    monkeypatch.delenv("SSIC_OFFLINE", raising=False)
    monkeypatch.delenv("YOLO_OFFLINE", raising=False)
    release, entered = threading.Event(), threading.Event()

    def stalled(*args, **kwargs):
        entered.set()
        release.wait()                                 # never answers while the probe waits
        raise OSError("released")

    monkeypatch.setattr(yolo.socket, "create_connection", stalled)
    try:
        assert yolo.network_reachable(timeout=0.05) is False
        assert entered.is_set() and not release.is_set()   # returned while the connect still hung
    finally:
        release.set()


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


def test_default_falls_back_and_says_how_to_get_person_groups(offline):
    name, reason = default_detector_name()
    assert name == "saliency" and "SSIC_YOLO_WEIGHTS" in reason
    lines = []
    img = np.random.default_rng(0).integers(0, 255, (128, 192, 3), dtype=np.uint8)
    gm = build_group_mask(img, log=lines.append)
    notice, summary = lines
    assert "saliency" in notice and "no person groups" in notice and "\n" not in notice
    for how in (f"yolov8n-seg.pt (from {yolo.RELEASES}) in {offline / 'ssic-cache'}", "--detector-weights",
                "SSIC_YOLO_WEIGHTS", "--mask"):
        assert how in notice
    assert "regions from detector saliency (default)" in summary and "YOLO" not in summary
    assert gm.names[0] == BACKGROUND


def test_default_yolo_is_downloaded_once_into_the_cache_where_there_is_a_network(offline, monkeypatch):
    """No weights here but a network: ultralytics is given the cache path to download into, and
    the choice (with the notice) is made once for a batch, not per image."""
    class FakeModel:
        task = "segment"

        def predict(self, *args, **kwargs):
            return [type("R", (), {"boxes": None})()]

    loads = []

    def load_model(path, needs_network=False, threads=None):      # stands in for ultralytics' download
        loads.append((path, needs_network))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"weights")
        return FakeModel()

    monkeypatch.delenv("SSIC_OFFLINE")
    monkeypatch.setattr(yolo, "network_reachable", lambda timeout=2.0: True)
    monkeypatch.setattr(yolo, "check_runtime", lambda path: (True, ""))
    monkeypatch.setattr(yolo, "load_model", load_model)
    assert default_detector_name()[0] == "yolo"
    lines = []
    sources = choose_detector(RegionSources(), log=lines.append)
    target = str(offline / "ssic-cache" / yolo.DOWNLOAD_NAME)
    assert sources.detector == "yolo" and sources.weights == target and loads == [(target, True)]
    assert default_detector_name()[0] == "yolo"                        # and from now on it is local
    assert len(lines) == 1 and "downloads yolov8n-seg.pt" in lines[0] and str(offline / "ssic-cache") in lines[0]
    lines.clear()
    img = np.zeros((32, 48, 3), np.uint8)
    for _ in range(2):
        build_group_mask(img, sources, log=lines.append)
    assert [line.split(":")[0] for line in lines] == ["regions from detector yolo (default)"] * 2
    assert loads[1:] == [(target, False)] * 2                         # no second download


@pytest.mark.skipif(not yolo.check_runtime(yolo.DOWNLOAD_NAME)[0], reason="needs ultralytics and torch")
def test_ultralytics_itself_is_asked_to_download_the_default_weights_into_the_cache(offline, monkeypatch):
    """The real Ultralytics, its download intercepted: it fetches the stock weights into ssic's
    cache; when the download brings nothing, ssic falls back with one notice."""
    import ultralytics.utils.downloads as downloads
    fetched = []
    monkeypatch.delenv("SSIC_OFFLINE")
    monkeypatch.setattr(yolo, "network_reachable", lambda timeout=2.0: True)
    monkeypatch.setattr(downloads, "safe_download", lambda url, file, **kw: fetched.append((url, str(file))))
    lines = []
    sources = choose_detector(RegionSources(), log=lines.append)
    (url, file), = fetched
    assert url.startswith(yolo.RELEASES) and url.endswith("/yolov8n-seg.pt")
    assert file == str(offline / "ssic-cache" / "yolov8n-seg.pt")
    assert sources.detector == "saliency" and len(lines) == 2
    assert "downloads yolov8n-seg.pt" in lines[0] and "YOLO failed" in lines[1] and "--mask" in lines[1]


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


@pytest.mark.slow
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
