"""``people``: OpenCV's HOG + linear SVM pedestrian detector (Dalal & Triggs 2005); no weights.

It finds upright people at least ~64 x 128 pixels tall (the detection window), so large
images are scanned at a reduced size and small ones enlarged a little. Boxes only.
"""
from __future__ import annotations

import numpy as np

from ._util import as_float, as_int, box_from_xyxy, check_cv2, check_image, import_cv2, nms, number_instances
from .base import Region
from .registry import register_detector

LABEL = "person"


class PeopleDetector:
    """OpenCV HOG people detector; regions labelled ``person`` (boxes)."""

    name = "people"

    def __init__(self, hit_threshold=0.0, scale=1.05, stride=8, nms_iou=0.4, work_size=960):
        self.hit_threshold = as_float("hit_threshold", hit_threshold, -5.0, 10.0)
        self.scale = as_float("scale", scale, 1.01, 2.0)
        self.stride = as_int("stride", stride, 4, 32)
        self.nms_iou = as_float("nms_iou", nms_iou, 0.0, 1.0)
        self.work_size = as_int("work_size", work_size, 128, 4096)
        cv2 = self._cv2 = import_cv2()
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(self, image: np.ndarray) -> list[Region]:
        cv2 = self._cv2
        image = check_image(image)
        h, w = image.shape[:2]
        f = self.work_size / max(h, w)               # scan at ~work_size on the long side
        work = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))),
                          interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        if work.shape[0] < 128 or work.shape[1] < 64:
            return []
        grey = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY)
        rects, weights = self._hog.detectMultiScale(
            grey, hitThreshold=self.hit_threshold, winStride=(self.stride, self.stride),
            padding=(8, 8), scale=self.scale)
        if len(rects) == 0:
            return []
        boxes = np.asarray(rects, np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]                 # x, y, w, h -> x0, y0, x1, y1
        boxes /= f
        margin = np.asarray(weights, np.float64).reshape(-1)
        score = 1.0 / (1.0 + np.exp(-2.0 * margin))  # SVM margin -> (0, 1); margin 0 -> 0.5
        regions = [Region(LABEL, box_from_xyxy(*boxes[i], w, h), float(score[i]))
                   for i in nms(boxes, score, self.nms_iou)]
        return number_instances(regions)


@register_detector("people", "OpenCV HOG people detector (boxes, label person); no weights",
                   check=check_cv2)
def make_people(hit_threshold=0.0, scale=1.05, stride=8, nms_iou=0.4, work_size=960) -> PeopleDetector:
    """OpenCV HOG people detector (boxes, label person); no weights."""
    return PeopleDetector(hit_threshold, scale, stride, nms_iou, work_size)
