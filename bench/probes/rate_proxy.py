"""Probe: fine-tuning with the rate counted on the coded symbols (``--rate-proxy rounded``)
against the usual noise proxy, as a paired pair of stretches.

Why: the additive-noise rate of a trained ssic model overstates what the coder writes by a
near-constant ~0.16 bpp (kodim23: 0.28 vs 0.12 bpp of y at q 1, 1.12 vs 1.01 at q 8; ``tests/
test_train.py``), so at low quality the model trains against a rate twice the real one — and the
low end is where ssic loses to WebP (``bench/rd_kodak.py``'s per-quality table).

The pair: both arms start from one weights file with the same seed (same crops, masks, qualities,
noise), the same budget and the same schedule (lr 3e-4 after a 50-step warm-up, then 3e-5 over the
last 0.3 CPU-hour), side by side as one process of one thread each, so both see the same machine;
only ``--rate-proxy`` differs. Each is measured like a campaign stretch (``bench/campaign.py``:
Kodak, 6 qualities, real bytes)::

    for arm in noise rounded; do
      OMP_NUM_THREADS=1 ssic train --data ../shared/data/train --out runs/arm-$arm --init weights/ssic-convhaar-c07e997d.pt \
        --threads 1 --batch 8 --crop 256 --warmup-steps 50 --cpu-hours 23.3 --decay-cpu-hours 0.3 \
        --seed 11 --precision fp32 --rate-proxy $arm --quiet &
    done; wait
    python -c "…campaign.evaluate(Path('runs/arm-…'), 2, Path('bench/results/probes/rate_proxy'))"
    python bench/probes/rate_proxy.py bench/results/probes/rate_proxy/arm-noise-*.row.json \
        bench/results/probes/rate_proxy/arm-rounded-*.row.json bench/results/probes/rate_proxy.json

(``--cpu-hours`` counts the whole run: the shipped weights' card carries 22.3 of them.)

Prints and writes: the rounded arm's BD-rate against the noise arm, the rate change at each
quality (at equal PSNR), and each arm against WebP at each quality (WebP's curve from the last
``make bench-rd``, ``bench/results/rd_kodak.json``).

Measured 2026-12-05 (README, *Training*): the rounded arm moved each point up the same curve,
+0.21 % BD-rate against the noise arm, and left the low end's gap to WebP as it was.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bdrate import bd_rate_curves, rate_gaps  # noqa: E402

CLASSIC = Path("bench/results/rd_kodak.json")


def _rounded(values):
    return [None if v is None else round(v, 2) for v in values]


def compare(noise: dict, rounded: dict, classic: dict) -> dict:
    webp = classic["curves"]["webp"]
    arms = {"noise": noise, "rounded": rounded}
    return {
        "arms": {k: {"model": r["model"], "weights": r["weights"], "cpu_hours": r["cpu_hours"],
                     "bd_rate_vs_jpeg": r["bd_rate_vs_jpeg"], "bd_rate_vs_webp": r["bd_rate_vs_webp"],
                     "points": r["points"]} for k, r in arms.items()},
        "bd_rate_rounded_vs_noise": round(bd_rate_curves(noise["points"], rounded["points"]), 2),
        "q": [p["q"] for p in rounded["points"]],
        "rate_change_rounded_vs_noise": _rounded(rate_gaps(noise["points"], rounded["points"])),
        "vs_webp": {k: _rounded(rate_gaps(webp, r["points"])) for k, r in arms.items()},
        "webp_from": str(CLASSIC),
    }


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        sys.exit(__doc__)
    noise, rounded = (json.loads(Path(p).read_text()) for p in argv[:2])
    result = compare(noise, rounded, json.loads(CLASSIC.read_text()))
    Path(argv[2]).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "arms"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
