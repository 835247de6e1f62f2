"""``saliency``: spectral-residual saliency (Hou & Zhang, CVPR 2007); no weights.

The log amplitude spectrum of a small grey copy of the image, minus its local average, is the
"spectral residual"; transformed back with the original phase and smoothed it gives a saliency
map. Pixels above ``threshold`` x the mean saliency (the paper uses 3) form the object map; its
largest connected parts become regions labelled ``salient``.
"""
from __future__ import annotations

import numpy as np

from ._util import as_float, as_int, check_cv2, check_image, import_cv2, number_instances
from .base import Region
from .registry import register_detector

LABEL = "salient"


def spectral_residual(image: np.ndarray, scale: int = 64, sigma: float = 2.5) -> np.ndarray:
    """Saliency map (float32, H x W of ``image``, max 1) by the spectral residual method.

    ``scale``: width of the grey copy analysed (the paper uses 64); ``sigma``: Gaussian blur of
    the map at that scale.
    """
    cv2 = import_cv2()
    h, w = image.shape[:2]
    sw = max(8, min(scale, w))
    sh = max(8, round(h * sw / w))
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
    spectrum = np.fft.fft2(small)
    log_amp = np.log(np.abs(spectrum) + 1e-9).astype(np.float32)
    phase = np.angle(spectrum)
    residual = log_amp - cv2.blur(log_amp, (3, 3), borderType=cv2.BORDER_REPLICATE)
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * phase))) ** 2
    sal = cv2.GaussianBlur(sal.astype(np.float32), (0, 0), sigma)
    sal = cv2.resize(sal, (w, h), interpolation=cv2.INTER_LINEAR)
    return sal / max(float(sal.max()), 1e-12)


class SaliencyDetector:
    """Spectral-residual saliency: the few most salient blobs, labelled ``salient``."""

    name = "saliency"

    def __init__(self, threshold=3.0, max_regions=3, min_area=0.005, scale=64):
        self.threshold = as_float("threshold", threshold, 0.5, 20.0)
        self.max_regions = as_int("max_regions", max_regions, 1, 100)
        self.min_area = as_float("min_area", min_area, 0.0, 1.0)
        self.scale = as_int("scale", scale, 16, 1024)
        self._cv2 = import_cv2()

    def detect(self, image: np.ndarray) -> list[Region]:
        cv2 = self._cv2
        image = check_image(image)
        h, w = image.shape[:2]
        sal = spectral_residual(image, self.scale)
        # Join nearby fragments: close with a kernel ~1/32 of the image's short side.
        k = max(3, (min(h, w) // 32) | 1)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        for factor in (self.threshold, self.threshold * 2 / 3):   # relax once if nothing stands out
            objects = (sal > factor * float(sal.mean())).astype(np.uint8)
            objects = cv2.morphologyEx(objects, cv2.MORPH_CLOSE, kernel)
            n, labels, stats, _ = cv2.connectedComponentsWithStats(objects, connectivity=8)
            parts = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= self.min_area * h * w]
            if parts:
                break
        parts.sort(key=lambda i: -int(stats[i, cv2.CC_STAT_AREA]))
        regions = []
        for i in parts[: self.max_regions]:
            x, y, bw, bh = (int(v) for v in stats[i, :4])
            mask = labels == i
            regions.append(Region(LABEL, (x, y, x + bw, y + bh), float(sal[mask].max()), mask))
        regions.sort(key=lambda r: -r.score)
        return number_instances(regions)


@register_detector("saliency", "spectral-residual saliency (Hou & Zhang 2007); no weights",
                   check=check_cv2)
def make_saliency(threshold=3.0, max_regions=3, min_area=0.005, scale=64) -> SaliencyDetector:
    """Spectral-residual saliency (Hou & Zhang 2007); no weights."""
    return SaliencyDetector(threshold, max_regions, min_area, scale)
