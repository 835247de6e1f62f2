"""Plot and summarise a training campaign from its log.jsonl files (is the curve flattening?).

    python -m research.training_curve runs/tiny/log.jsonl runs/tiny2/log.jsonl \
        --event 8837:"grown into ssic-tiny2" --out research/results/training_curve.png

Logs are read in order as one lineage; when a log resumes from an earlier step than it had
reached (a run restarted from a backup), the records it replaces are dropped. Prints a Markdown
table: training loss / bpp / PSNR averaged over windows of steps, and the periodic
real-bitstream evaluations.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_lineage(paths: list[Path]) -> tuple[list[dict], list[dict]]:
    """(training records, evaluation records), each sorted by step, replaced records dropped."""
    records: list[dict] = []
    for path in paths:
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if "loss" in rec or "eval" in rec:
                records = [r for r in records if r["step"] < rec["step"]
                           or (r["step"] == rec["step"] and ("eval" in r) != ("eval" in rec))]
                records.append(rec)
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval" in r]
    return train, evals


def windows(train: list[dict], steps: int) -> list[dict]:
    """Mean loss / bpp / PSNR over consecutive windows of ``steps`` training steps.

    ``bpp_z`` (z's share of the rate, logged since 2026-12-04) is averaged only over a window
    whose every record has it; an older window gets None rather than a mean of a few records.
    """
    out, bucket = [], []
    for i, rec in enumerate(train):
        bucket.append(rec)
        if rec["step"] - bucket[0]["step"] + 50 >= steps or i == len(train) - 1:   # last one: the remainder
            row = {"step": rec["step"], "images": rec["images"], "lr": rec["lr"],
                   **{k: sum(r[k] for r in bucket) / len(bucket) for k in ("loss", "bpp", "psnr")}}
            row["bpp_z"] = (sum(r["bpp_z"] for r in bucket) / len(bucket)
                            if all("bpp_z" in r for r in bucket) else None)
            out.append(row)
            bucket = []
    return out


def lr_drops(train: list[dict]) -> list[int]:
    """Steps where the lr fell tenfold (not a warm-up restart, which falls further)."""
    return [b["step"] for a, b in zip(train, train[1:]) if 0.09 < b["lr"] / a["lr"] < 0.11]


def plot(train: list[dict], evals: list[dict], events: dict[int, str], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    smooth = windows(train, 500)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    axes[0].plot([r["step"] for r in smooth], [r["loss"] for r in smooth])
    axes[0].set(yscale="log", ylabel="training loss λ·255²·MSE + bpp (mean of 500 steps)")
    axes[0].set_ylim(top=max(r["loss"] for r in smooth if r["step"] > 1000) * 1.2)
    for q in (evals[0]["eval"] if evals else {}):
        axes[1].plot([r["step"] for r in evals], [r["eval"][q][1] for r in evals], "o-", label=q)
        axes[2].plot([r["step"] for r in evals], [r["eval"][q][0] for r in evals], "o-", label=q)
    axes[1].set(ylabel="Kodak PSNR (dB), 4 images, real .ssb")
    axes[2].set(ylabel="Kodak bpp, 4 images, real .ssb")
    marks = {**{s: "lr ×0.1" for s in lr_drops(train)}, **events}
    for ax in axes:
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        for step, label in marks.items():
            ax.axvline(step, color="grey", ls="--", lw=0.8)
            ax.text(step, ax.get_ylim()[1], f" {label}", rotation=90, va="top", fontsize=7, color="grey")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def table(train: list[dict], evals: list[dict], steps: int) -> str:
    rows = ["| up to step | images | lr | loss | bpp | of which z | PSNR (dB) |", "|---:|---:|---:|---:|---:|---:|---:|"]
    rows += [f"| {r['step']:,} | {r['images']:,} | {r['lr']:.0e} | {r['loss']:.3f} | {r['bpp']:.3f} | "
             f"{'–' if r['bpp_z'] is None else format(r['bpp_z'], '.4f')} | {r['psnr']:.2f} |"
             for r in windows(train, steps)]
    if evals:
        qs = list(evals[0]["eval"])
        rows += ["", "| step | " + " | ".join(f"{q} bpp / PSNR" for q in qs) + " |", "|---:|" + "---|" * len(qs)]
        rows += [f"| {r['step']:,} | " + " | ".join(f"{r['eval'][q][0]:.3f} / {r['eval'][q][1]:.2f}" for q in qs) + " |"
                 for r in evals]
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.training_curve", description=__doc__.splitlines()[0])
    ap.add_argument("logs", type=Path, nargs="+")
    ap.add_argument("--event", action="append", default=[], help="STEP:LABEL marked on the plot")
    ap.add_argument("--window", type=int, default=1000, help="steps per row of the printed table")
    ap.add_argument("--out", type=Path, help="PNG to write")
    args = ap.parse_args(argv)
    train, evals = read_lineage(args.logs)
    events = {int(e.split(":", 1)[0]): e.split(":", 1)[1] for e in args.event}
    if args.out:
        plot(train, evals, events, args.out)
    print(table(train, evals, args.window))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
