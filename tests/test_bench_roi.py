"""bench.roi: the ROI bookkeeping that its published numbers rest on."""
from __future__ import annotations

import numpy as np
import pytest

from bench import roi as bench_roi
from ssic_cli.detect.base import Region


def person(box, mask=None):
    return Region("person", box, 1.0, mask)


def test_roi_group_holds_every_roi_pixel_and_its_area_is_block_aligned():
    w, h = 256, 130
    mask = np.zeros((h, w), bool)
    mask[0:120, 40:60] = True
    mask[100:120, 40:200] = True                              # an L: irregular, not its box
    roi = bench_roi.make_roi("person", [person((40, 0, 200, 120), mask)], w, h)
    gm = bench_roi.group_mask_for("person", roi.regions, w, h, boxes_only=False)
    area = bench_roi.group_area(gm, ["person"], w, h)
    assert area.shape == (h, w) and area[roi.mask].all()
    boxed = bench_roi.group_area(bench_roi.group_mask_for("person", roi.regions, w, h, boxes_only=True),
                                ["person"], w, h)
    assert boxed[roi.box].all() and boxed.sum() > area.sum()
    assert roi.rect == (40, 0, 200, 120)


def test_tiny_rois_are_skipped():
    assert bench_roi.make_roi("person", [person((0, 0, 30, 30))], 64, 64) is None
    assert bench_roi.image_rois([], 64, 64) == {}


def test_masked_psnr_counts_only_the_given_pixels():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 255                                             # one wrong pixel, outside `where`
    where = np.ones((4, 4), bool)
    where[0, 0] = False
    assert bench_roi.masked_psnr(a, b, where) == 99.0
    assert bench_roi.masked_psnr(a, b, ~where) == pytest.approx(0.0)
    assert bench_roi.masked_psnr(a, b, np.zeros((4, 4), bool)) is None


def test_boundary_band_straddles_the_edge():
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    band = bench_roi.boundary_band(mask, 3)
    assert band[10, 20] and band[8, 20] and band[12, 20]      # on, just outside, just inside
    assert not band[20, 20] and not band[2, 20]               # deep inside, far outside


def test_curves_pool_bits_over_roi_pixels():
    pts = [{"method": "ssic", "roi": "person", "setting": 4.0, "bits": 1000, "roi_pixels": 1000,
            "psnr_mask": 30.0, "psnr_box": None, "coverage": 1.0},
           {"method": "ssic", "roi": "person", "setting": 4.0, "bits": 1000, "roi_pixels": 9000,
            "psnr_mask": 20.0, "psnr_box": None, "coverage": 1.0}]
    (p,) = bench_roi.curves([{"points": pts}])["person"]["ssic"]
    assert p["bpp"] == pytest.approx(0.2) and p["psnr"] == pytest.approx(25.0) and p["psnr_box"] is None
