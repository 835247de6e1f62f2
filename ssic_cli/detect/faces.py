"""``faces``: OpenCV's bundled Haar cascade for frontal faces (Viola & Jones 2001); no weights.

The cascade file ships with opencv-python (``cv2.data.haarcascades``). Face boxes are tight,
so each is grown by ``grow`` (a fraction of its size) to take in hair and chin.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import DetectorUnavailable
from ._util import as_float, as_int, box_from_xyxy, check_cv2, check_image, import_cv2, number_instances
from .base import Region
from .registry import register_detector

LABEL = "face"
CASCADE = "haarcascade_frontalface_default.xml"


class FaceDetector:
    """OpenCV Haar frontal-face cascade; regions labelled ``face`` (boxes)."""

    name = "faces"

    def __init__(self, scale=1.1, neighbors=5, min_size=24, grow=0.2):
        self.scale = as_float("scale", scale, 1.01, 2.0)
        self.neighbors = as_int("neighbors", neighbors, 0, 100)
        self.min_size = as_int("min_size", min_size, 8, 4096)
        self.grow = as_float("grow", grow, 0.0, 2.0)
        cv2 = self._cv2 = import_cv2()
        root = getattr(getattr(cv2, "data", None), "haarcascades", None)
        path = os.path.join(root, CASCADE) if root else None
        if path is None or not os.path.exists(path):
            raise DetectorUnavailable(f"OpenCV's {CASCADE} is missing: pip install opencv-python-headless")
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise DetectorUnavailable(f"cannot load {path}")

    def detect(self, image: np.ndarray) -> list[Region]:
        cv2 = self._cv2
        image = check_image(image)
        h, w = image.shape[:2]
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        rects, _, level_weights = self._cascade.detectMultiScale3(
            grey, scaleFactor=self.scale, minNeighbors=self.neighbors,
            minSize=(self.min_size, self.min_size), outputRejectLevels=True)
        regions = []
        for (x, y, bw, bh), lw in zip(np.asarray(rects).reshape(-1, 4), np.asarray(level_weights).reshape(-1)):
            g = self.grow / 2
            box = box_from_xyxy(x - g * bw, y - g * bh, x + bw * (1 + g), y + bh * (1 + g), w, h)
            score = 1.0 / (1.0 + np.exp(-float(lw)))     # stage margin -> (0, 1)
            regions.append(Region(LABEL, box, float(score)))
        regions.sort(key=lambda r: -r.score)
        return number_instances(regions)


@register_detector("faces", "OpenCV Haar frontal-face cascade (boxes, label face); no weights",
                   check=check_cv2)
def make_faces(scale=1.1, neighbors=5, min_size=24, grow=0.2) -> FaceDetector:
    """OpenCV Haar frontal-face cascade (boxes, label face); no weights."""
    return FaceDetector(scale, neighbors, min_size, grow)
