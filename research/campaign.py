"""The transform campaign's curve: Kodak BD-rate (real `.ssb` bytes) at the end of every stretch.

    python -m research.campaign evaluate runs/base-convhaar   # after a stretch's lr decay (minutes)
    python -m research.campaign table                         # research/results/campaign.{json,md,png}
    python -m research.campaign holdout WEIGHTS               # the held-out photos, ssic side only
    python -m research.campaign discard ROW --why "…"         # a stretch the campaign did not continue

Every session's stretch ends with a short lr decay (``ssic train --decay-cpu-hours``), so its last
checkpoint is what the campaign could ship: ``evaluate`` exports it and measures it exactly as
the pilots were measured (``research.pilots``: Kodak, 6 qualities, BD-rate vs the JPEG anchors),
one row per checkpoint. ``table`` puts the rows after those of the pilot runs the campaign
continues, ordered by CPU-hours, with the gain of each stretch: the curve that says whether more
CPU time still pays. ``holdout`` measures a candidate on the held-out photos (``make
bench-rd-holdout`` puts them in runs/holdout) against the classic curves of the last full
held-out run (bench/results/rd_holdout.json, same photos), without re-running the classic
encoders: a check between stretches, not a replacement for ``make bench-rd-holdout``.
``discard`` marks a row whose checkpoint the campaign did not continue from (a stretch that
diverged): ``table`` keeps it out of the curve and lists it below, with the reason.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.bdrate import bd_rate_curves
from bench.common import RESULTS as BENCH_RESULTS

from . import pilots

ROOT = pilots.ROOT
RESULTS_DIR = pilots.RESULTS_DIR
RESULTS = RESULTS_DIR / "campaign"
# The pilot runs the campaign continues (their rows are in research/results/pilots/).
LINEAGE = ("ssic-convhaar", "ssic-convhaar@3.5h")


def row_name(run: Path, steps: int) -> str:
    return f"{run.name}-{steps}"


def evaluate(run: Path, threads: int, results: Path = RESULTS, images: int | None = None) -> dict:
    results.mkdir(parents=True, exist_ok=True)
    state = pilots.run_state(run)
    name = row_name(run, state["steps"])
    weights = pilots.export(run)
    pilots.log(f"{name}: {weights.name}, {state['cpu_hours']} CPU-h; rate-distortion on Kodak")
    row = {"model": name, "run": run.name, "weights": weights.name, **state,
           **pilots.rate_distortion(name, weights, threads, images)}
    (results / f"{name}.row.json").write_text(json.dumps(row, indent=1) + "\n")
    pilots.log(f"{name}: BD-rate vs JPEG {row['bd_rate_vs_jpeg']} %, vs WebP {row['bd_rate_vs_webp']} %")
    return row


def curve(rows: list[dict]) -> list[dict]:
    """Rows ordered by CPU-hours, each with the BD-rate gained since the row before it."""
    rows = sorted(rows, key=lambda r: r["cpu_hours"])
    for before, row in zip([None] + rows, rows):
        row["gain"] = None if before is None else round(row["bd_rate_vs_jpeg"] - before["bd_rate_vs_jpeg"], 2)
    return rows


def _pct(value) -> str:
    return "—" if value is None else f"{value:+.1f} %"


def discard(name: str, why: str, results: Path = RESULTS) -> dict:
    path = results / f"{name}.row.json"
    if not path.is_file():
        sys.exit(f"campaign: no row {name} in {results}")
    row = {**json.loads(path.read_text()), "discarded": why}
    path.write_text(json.dumps(row, indent=1) + "\n")
    return row


def discarded_markdown(rows: list[dict]) -> str:
    lines = ["| stretch not continued | CPU-h | BD-rate vs JPEG | why |", "|---|---:|---:|---|"]
    lines += [f"| `{r['model']}` | {r['cpu_hours']:.2f} | {_pct(r['bd_rate_vs_jpeg'])} | {r['discarded']} |"
              for r in sorted(rows, key=lambda r: r["cpu_hours"])]
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    lines = ["| run | CPU-h | images | BD-rate vs JPEG | gained | BD-rate vs WebP | q 8: bpp / PSNR |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        top = max(r["points"], key=lambda p: p["q"])
        lines.append(f"| `{r['model']}` | {r['cpu_hours']:.2f} | {r['images_seen'] / 1e3:.0f} k | "
                     f"{_pct(r['bd_rate_vs_jpeg'])} | {_pct(r['gain'])} | {_pct(r['bd_rate_vs_webp'])} | "
                     f"{top['bpp']:.3f} / {top['psnr']:.2f} dB |")
    return "\n".join(lines)


# The previous generation's campaign (ssic-tiny → ssic-tiny2, one run on 2 cores; Kodak BD-rate vs
# JPEG of each shipment, 8 qualities, as published in README on 2026-12-02): the curve to beat.
TINY2_CAMPAIGN = ((3.46, 18.7), (5.17, 2.1), (7.79, -10.2), (10.6, -16.1), (13.7, -19.6), (16.4, -21.2))
WEBP = -34.2      # Kodak BD-rate vs JPEG of WebP measured by bench.rd (the must-target)


def plot(rows: list[dict], out: Path, discarded: list[dict] = ()) -> None:
    """BD-rate vs CPU-hours: this campaign against the previous generation's."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot([r["cpu_hours"] for r in rows], [r["bd_rate_vs_jpeg"] for r in rows], "o-", label="ssic-convhaar (pilot → campaign)")
    if discarded:
        ax.plot([r["cpu_hours"] for r in discarded], [r["bd_rate_vs_jpeg"] for r in discarded], "x",
                color="tab:red", ms=8, label="stretch not continued (see table)")
    ax.plot(*zip(*TINY2_CAMPAIGN), "s--", color="grey", label="ssic-tiny2 campaign (previous weights)")
    ax.axhline(WEBP, color="tab:red", lw=0.8, ls=":", label=f"WebP ({WEBP:+.1f} %): must-target")
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel("training CPU-hours (process CPU time, 2-core EPYC)")
    ax.set_ylabel("Kodak BD-rate vs JPEG (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def table(results: Path = RESULTS) -> str:
    rows = [json.loads((pilots.RESULTS / f"{name}.row.json").read_text()) for name in LINEAGE]
    stored = [json.loads(p.read_text()) for p in sorted(results.glob("*.row.json"))]
    discarded = [r for r in stored if r.get("discarded")]
    rows = curve(rows + [r for r in stored if not r.get("discarded")])
    text = markdown(rows) + ("\n\n" + discarded_markdown(discarded) if discarded else "")
    (RESULTS_DIR / "campaign.md").write_text(text + "\n")
    (RESULTS_DIR / "campaign.json").write_text(
        json.dumps({"lineage": LINEAGE, "rows": rows, "discarded": discarded}, indent=1) + "\n")
    plot(rows, RESULTS_DIR / "campaign.png", discarded)
    return text


def holdout(weights: Path, photos: Path, qualities=(1, 2, 3, 5, 6.5, 8)) -> dict:
    """BD-rate of ``weights`` on the held-out photos vs the stored classic and ssic curves."""
    import torch
    torch.set_num_threads(2)
    from ssic_cli.evaluate import evaluate_files
    from ssic_cli.weights import load_weights
    files = sorted(photos.glob("*.png"))
    if not files:
        sys.exit(f"campaign: no photos in {photos} (make bench-rd-holdout makes them)")
    results = evaluate_files(files, qualities, weights=load_weights(weights))["results"]
    points = [{"q": r["quality"], "bpp": r["bpp"], "psnr": r["psnr"]} for r in results]
    stored = json.loads((BENCH_RESULTS / "rd_holdout.json").read_text())["curves"]
    out = {"weights": weights.name, "images": len(files), "curve": points,
           "bd_rate_vs": {k: round(float(bd_rate_curves(stored[k], points)), 2) for k in ("jpeg", "webp", "jxl", "ssic")}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"holdout-{weights.stem}.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.campaign", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    e = sub.add_parser("evaluate", help="export a run's last checkpoint and measure it on Kodak")
    e.add_argument("run", type=Path, help="the campaign's run folder (holds last.pt)")
    e.add_argument("--threads", type=int, default=2, help="torch threads for the Kodak run (default: %(default)s)")
    e.add_argument("--images", type=int, help="only the first N Kodak images (a quick check, not a result)")
    sub.add_parser("table", help="the curve: pilot rows + campaign rows -> research/results/campaign.{json,md,png}")
    h = sub.add_parser("holdout", help="a candidate on the held-out photos vs the stored classic curves")
    h.add_argument("weights", type=Path)
    h.add_argument("--photos", type=Path, default=ROOT / "runs/holdout")
    d = sub.add_parser("discard", help="keep a stretch's row out of the curve (its checkpoint was not continued)")
    d.add_argument("row", help="the row's name, e.g. base-convhaar-19438")
    d.add_argument("--why", required=True, help="one line: what went wrong (shown in the table)")
    args = ap.parse_args(argv)
    if args.command == "evaluate":
        if not (args.run / "last.pt").is_file():
            sys.exit(f"campaign: {args.run} holds no last.pt")
        run = args.run.resolve()
        # A quick check on a few images is not a point of the curve: it stays in the run folder.
        evaluate(run, args.threads, run / "quick-eval" if args.images else RESULTS, args.images)
    elif args.command == "holdout":
        print(json.dumps(holdout(args.weights, args.photos)["bd_rate_vs"]))
    elif args.command == "discard":
        discard(args.row, args.why)
    else:
        print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
