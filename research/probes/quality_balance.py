"""Probe: reweighting the training loss across qualities (``ssic train --quality-balance``), as
paired arms against the plain loss.

Why: one set of weights serves every quality, trained on λ(q)·255²·MSE + bpp with q uniform in
[1, 8]; at the shipped model's operating points a q 8 sample's loss is ~8× a q 1 sample's
(``train.LOSS_AT_QUALITY``), so the shared transform spends most of its gradient on the high end —
and ssic's gap to WebP is widest at the low end (``bench.rd``'s per-quality table).
``--quality-balance b`` divides each sample's loss by LOSS_AT_QUALITY(q)^b: b = 1 gives every
quality an equal share, b = 0.5 half way; each quality's own trade-off (λ) is unchanged.

The arms: b = 1 and b = 0.5, started from the shipped weights with the control's seed, budget and
schedule (lr 3e-4 after a 50-step warm-up, then 3e-5 over the last 0.3 CPU-hour), side by side as
one process of one thread each on the same kind of machine as the control (the plain-loss arm
``arm-noise-24366`` of ``rate_proxy.py``, run the same way)::

    for b in 1 0.5; do
      OMP_NUM_THREADS=1 ssic train --data ../shared/data/train --out runs/arm-balance$b --init weights/ssic-convhaar-c07e997d.pt \
        --threads 1 --batch 8 --crop 256 --warmup-steps 50 --cpu-hours 23.3 --decay-cpu-hours 0.3 \
        --seed 11 --precision fp32 --quality-balance $b --quiet &
    done; wait
    python -c "…campaign.evaluate(Path('runs/arm-balance…'), 2, Path('research/results/probes/quality_balance'))"
    python -m research.probes.quality_balance research/results/probes/quality_balance.json \
        research/results/probes/rate_proxy/arm-noise-24366.row.json research/results/probes/quality_balance/arm-balance*.row.json

Prints and writes (``paired_arms.py``): each arm's BD-rate against the control, its rate change
at each quality (at equal PSNR), and its gap to WebP at each quality.
"""
from .paired_arms import main

if __name__ == "__main__":
    raise SystemExit(main())
