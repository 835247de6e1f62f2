"""Probe: fine-tuning with the rate counted on the coded symbols (``--rate-proxy rounded``)
against the usual noise proxy, as a paired pair of stretches.

Why: the additive-noise rate of a trained ssic model overstates what the coder writes by a
near-constant ~0.16 bpp (kodim23: 0.28 vs 0.12 bpp of y at q 1, 1.12 vs 1.01 at q 8; ``tests/
test_train.py``), so at low quality the model trains against a rate twice the real one — and the
low end is where ssic loses to WebP (``bench.rd``'s per-quality table).

The pair: both arms start from one weights file with the same seed (same crops, masks, qualities,
noise), the same budget and the same schedule (lr 3e-4 after a 50-step warm-up, then 3e-5 over the
last 0.3 CPU-hour), side by side as one process of one thread each, so both see the same machine;
only ``--rate-proxy`` differs. Each is measured like a campaign stretch (``research.campaign``:
Kodak, 6 qualities, real bytes)::

    for arm in noise rounded; do
      OMP_NUM_THREADS=1 ssic train --data ../shared/data/train --out runs/arm-$arm --init weights/ssic-convhaar-c07e997d.pt \
        --threads 1 --batch 8 --crop 256 --warmup-steps 50 --cpu-hours 23.3 --decay-cpu-hours 0.3 \
        --seed 11 --precision fp32 --rate-proxy $arm --quiet &
    done; wait
    python -c "…campaign.evaluate(Path('runs/arm-…'), 2, Path('research/results/probes/rate_proxy'))"
    python -m research.probes.rate_proxy research/results/probes/rate_proxy.json \
        research/results/probes/rate_proxy/arm-noise-*.row.json research/results/probes/rate_proxy/arm-rounded-*.row.json

(``--cpu-hours`` counts the whole run: the shipped weights' card carries 22.3 of them.)

Prints and writes (``paired_arms.py``, the noise arm as control): the rounded arm's BD-rate
against the noise arm, the rate change at each quality (at equal PSNR), and each arm against WebP
at each quality.

Measured 2026-12-05 (README, *Training*): the rounded arm moved each point up the same curve,
+0.21 % BD-rate against the noise arm, and left the low end's gap to WebP as it was.
"""
from .paired_arms import main

if __name__ == "__main__":
    raise SystemExit(main())
