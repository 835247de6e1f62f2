"""Measure the default weights on Kodak with real bitstreams and write their card.

Writes the measurements beside the weights file (``ssic_cli/weights_data/<id>.json``, read back
by ``ssic_cli.weights.load_weights`` as part of the card), the card ``weights/<id>.md`` of every
weights file the package ships, the card's summary into the manifest entry
(``ssic_cli/weights_data/manifest.json``: CPU-hours, Kodak q 1 and q 8, date) and the table of
released weights in ``weights/README.md`` (its prose is left alone). Data only: no Python source
is edited.

    python -m tools.release.weights_card --from-rd bench/results/rd_kodak.json \\
        --campaign research/results/campaign.json
    python -m tools.release.weights_card [--images 24] [--qualities 1 2 3 4 5 6 7 8]   # measure here
"""
from __future__ import annotations

import argparse
import ast
import json
import platform
import sys
import time
from pathlib import Path

from bench.common import KODAK

from .ship import ROOT, read_manifest, write_manifest

CARDS = ROOT / "weights"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.release.weights_card", description=__doc__.splitlines()[0])
    ap.add_argument("--kodak", type=Path, default=KODAK)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--qualities", type=float, nargs="+", default=[1, 2, 3, 4, 5, 6, 7, 8])
    ap.add_argument("--curve", type=Path, help="training log.jsonl to summarise in the card")
    ap.add_argument("--campaign", type=Path, help="research.campaign table result (campaign.json) to show as the curve")
    ap.add_argument("--from-rd", type=Path, help="take the Kodak table from a bench.rd result "
                    "(its 'ssic' curve, measured with these weights) instead of measuring again")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(2)
    from ssic_cli import weights as released
    from ssic_cli.evaluate import evaluate_files
    lm = released.load_weights(released.PACKAGE_DIR / f"{released.default_weights_id()}.pt")
    files = sorted(args.kodak.glob("kodim*.png"))[: args.images]
    t0 = time.time()
    if args.from_rd:
        rd = json.loads(args.from_rd.read_text())
        if rd["meta"]["weights"]["hash"] != lm.weights_hash.hex():
            raise SystemExit(f"{args.from_rd} was measured with other weights")
        kodak = [{"quality": p["q"], "bpp": round(p["bpp"], 4), "psnr": round(p["psnr"], 3),
                  "encode_s": round(p["enc_s"], 3), "decode_s": round(p["dec_s"], 3)} for p in rd["curves"]["ssic"]]
        files = files[: rd["meta"]["images"]]
        measured = rd["meta"]["date"][:10]
    else:
        measured = time.strftime("%Y-%m-%d")
        ev = evaluate_files(files, args.qualities)
        kodak = [{"quality": r["quality"], "bpp": round(r["bpp"], 4), "psnr": round(r["psnr"], 3),
                  "encode_s": round(r["encode_s"], 3), "decode_s": round(r["decode_s"], 3)} for r in ev["results"]]
    card = {"kodak": kodak, "kodak_images": len(files), "kodak_measured": measured,
            "kodak_protocol": "mean over images of whole-file .ssb bpp and RGB PSNR (8-bit), one group, "
                              f"{platform.machine()} 2 threads, torch {torch.__version__}",
            "eval_seconds": round(time.time() - t0, 1)}
    if args.curve and args.curve.exists():
        recs = [json.loads(line) for line in args.curve.read_text().splitlines()]
        card["training_curve"] = [r for r in recs if "eval" in r]
    if args.campaign:
        card["campaign"] = json.loads(args.campaign.read_text())["rows"]
    lm.path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    manifest = read_manifest(released.MANIFEST)
    for wid, entry in manifest["weights"].items():
        if entry["source"] != "package":
            continue
        path = released.PACKAGE_DIR / f"{wid}.pt"
        full = {**released.load_weights(path).card, **(card if path == lm.path else {})}   # the cache holds the old sidecar
        (CARDS / f"{wid}.md").write_text(render(path.name, full, full.get("campaign")))
        entry["card"] = {**entry.get("card", {}), **card_summary(full), "details": f"weights/{wid}.md"}
    write_manifest(released.MANIFEST, manifest)
    index = CARDS / "README.md"
    index.write_text(update_index(index.read_text(), manifest))
    print(index.read_text())
    return 0


def card_summary(card: dict) -> dict:
    """What the manifest keeps of a card: CPU-hours, Kodak (bpp, PSNR) at the lowest and highest
    quality, and when they were measured."""
    low, high = card["kodak"][0], card["kodak"][-1]
    return {"cpu_hours": card["cpu_hours"], "kodak_q1": [low["bpp"], low["psnr"]],
            "kodak_q8": [high["bpp"], high["psnr"]], "kodak_measured": card["kodak_measured"]}


def architecture(model_id: str) -> str:
    from ssic_cli.model import MODEL_CONFIGS
    c = MODEL_CONFIGS[model_id]
    refine = ", ".join(f"1/{s}" for s in c.refine_scales)
    stages = []
    for scale, kind, dim, depth in zip((2, 4, 8, 16), c.kinds, c.dims, c.depths):
        what = ("token MLP" if depth == 0 else f"{depth} GI Swin block(s), window {c.window}") if kind == "swin" \
            else f"{depth} residual block(s) of group-masked dense 3×3 convs"
        stages.append(f"1/{scale}: {dim} ch, {what}")
    text = f"`{model_id}`: pixel-(un)shuffle + 1×1 resampling; " + "; ".join(stages)
    if c.haar:
        text += "; fixed Haar-wavelet shortcuts around every resampling stage"
    if refine:
        text += f"; group-masked depthwise 3×3 conv blocks after the {refine} synthesis stages"
    return text + (f"; per-group hyperprior ({c.hyper_latent}-ch z; analysis with 2 GI Swin blocks, synthesis "
                   f"integer-exact: 1×1, 1×1, group-masked dense 3×3, 1×1); ChARM with {c.slices} slices of M = "
                   f"{c.latent}, integer-exact 1×1 slice and LRP nets; variable rate by 8 learned gain vectors")


def tuning_row(card: dict) -> str:
    """The card row of a parameter path fine-tuned on frozen transforms (``ssic tune``)."""
    tune = card.get("parameter_path_tuning")
    if not tune:
        return ""
    opts = tune.get("options", {})
    return (f"| entropy-parameter path | fine-tuned with the transforms frozen (`ssic tune`): {tune['steps']:,} steps of "
            f"batch {opts.get('batch', '?')} at {opts.get('crop', '?')}² ({opts.get('variants', '?')} augmented "
            f"copies of each training crop, latents computed once), {tune['wall_hours']} wall-clock hours on 2 cores, "
            f"lr {opts.get('lr', '?')} ×0.1 for the last 15 %; transforms, hyper prior and gains from "
            f"`{card['transforms_from']}` |\n")


# How each shipped generation came to be: campaign facts a checkpoint cannot know.
STORY = {
    "ssic-tiny2p": {
        "data": "2,068 photo crops of 256×256 (the shared training set), random 128² crops + flips; random "
                "irregular group masks (half single-group)",
        "history": "batch 16, then 8 from step 654; lr 3e-4 with ×0.1 for steps 7,000–8,286, 11,200–12,366 and "
                   "17,400–19,122 (one drop before each shipment, back to 3e-4 on resuming, to step 20,171), then "
                   "lr 1e-4 with ×0.1 for 24,500–26,590 and from 33,400 (back to 1e-4 in between); `ssic-tiny` until "
                   "step 8,837, then grown into `ssic-tiny2`: the new conv blocks start as the identity, new "
                   "optimiser; from step 35,488 (on a 2-core AVX-512/AMX EPYC) batch 16, bf16 autocast for the "
                   "transforms, new optimiser, lr 1e-4 with ×0.1 from 39,500",
        "machine": "2-core EPYC: AVX2 and fp32 to step 35,488, then AVX-512/AMX and bf16; shared with development work",
    },
    "ssic-convhaar": {
        "data": "2,655 photo crops of 256×256 (`../shared/data/train` with `more/`), random 128² crops in all 8 "
                "flips and 90° turns (from step 15,012: the whole 256² crops, in all 8); half the samples one "
                "group, half 2–5 random irregular groups",
        # One lineage, told up to each card's own step: (first step the sentence applies to, sentence).
        "history": [
            (0, "batch 16 (the pilot: one process, one thread, 1.5 CPU-hours, lr 3e-4 after 300 warm-up steps, "
                "×0.1 over the last 15 %; trained on to 3.5 CPU-hours on the same schedule shape), then the "
                "campaign: 2 DistributedDataParallel ranks of one thread, batch 8 each, lr back at 3e-4 on every "
                "resume and ×0.1 over the last 0.3 CPU-hours of each session's stretch"),
            (15_012, "; from step 15,012 batch 4 per rank of 256² crops (twice the pixels per step)"),
            (17_437, "; from step 17,437 (12.8 CPU-hours, the shipped d256d0f6, restarted with `--init` and a new "
                     "optimiser) `--precision auto`, which chose fp32 on the Intel VMs"),
            (21_487, " and, past 19.4 CPU-hours (the shipped 2c13f7ec), bf16 on AMD EPYC (Zen 4) VMs"),
            (24_111, "; from step 24,111 (22.3 CPU-hours, the shipped c07e997d, `--init`) fp32, 50-step warm-ups and "
                     "every quality's loss weighted alike (`--quality-balance 1`): one process of batch 8 for "
                     "1.0 CPU-hour, then 2 ranks of batch 4"),
        ],
        "machine": [
            (0, "2-core AMD EPYC with AVX-512, bf16 autocast for the transforms, to 12.8 CPU-hours"),
            (17_437, "; then 2-core Intel Xeon VMs (AVX-512 with BF16, no AMX), fp32 (1.3× less CPU per step there "
                     "than bf16), to 19.4"),
            (21_487, "; then 2-core AMD EPYC (Zen 4) VMs, bf16 (~1.5× the steps per CPU-hour of fp32 on the Intel "
                     "VMs), to 22.3"),
            (24_111, "; then 2-core AMD EPYC Zen 3 VMs (AVX2 only, no bf16), fp32 (~3× the CPU per step of bf16 on "
                     "Zen 4)"),
        ],
    },
}


def lineage(story: "str | list[tuple[int, str]]", steps: int) -> str:
    """A story told up to ``steps``: the sentences of a shared lineage that happened before it."""
    if isinstance(story, str):
        return story
    return "".join(text for first, text in story if first < steps)


def render(name: str, card: dict, campaign: "list[dict] | None" = None) -> str:
    story = STORY[card["model_id"]]
    opts = card.get("training_options", {})
    rows = "\n".join(f"| {r['quality']:g} | {r['bpp']:.4f} | {r['psnr']:.2f} | {r['encode_s']:.2f} | {r['decode_s']:.2f} |"
                     for r in card["kodak"])
    drops = "".join(f", ×0.1 from step {d:,}" for d in ast.literal_eval(opts.get("lr_drops", "()")))  # stored as str
    return f"""# Weights `{name}`

| | |
|---|---|
| architecture | {architecture(card['model_id'])} |
| parameters | {card['parameters']:,} (transform weights stored as float16, entropy tables and gains float32) |
| data | {story['data']} |
| steps (transforms) | {card['steps']:,} steps, {card['images_seen']:,} images seen — {lineage(story['history'], card['steps'])} |
| CPU time (transforms) | {card['cpu_hours']} CPU-hours (process CPU time; {lineage(story['machine'], card['steps'])}) |
| optimiser (last stretch) | Adam, lr {opts.get('lr', '?')} after {opts.get('warmup_steps', '?')} warm-up steps{drops}, grad-norm clip 1.0 |
{tuning_row(card)}
## Kodak, real bitstreams

{card['kodak_protocol']}; {card['kodak_images']} images, measured {card['kodak_measured']}.
Times are medians per image (entropy coding included, file I/O excluded).

| quality | bpp | PSNR (dB) | encode s | decode s |
|---|---|---|---|---|
{rows}

{training_curve(card, campaign)}"""


def training_curve(card: dict, campaign: "list[dict] | None") -> str:
    """The campaign table (Kodak BD-rate after each stretch) if given, else the periodic evaluation."""
    if campaign:
        rows = "\n".join(f"| {r['model']} | {r['cpu_hours']:.2f} | {r['images_seen']:,} | {r['bd_rate_vs_jpeg']:+.1f} % |"
                         for r in campaign)
        return ("## Training curve (24 Kodak images, real bytes, q 1, 2, 3, 5, 6.5, 8, after each stretch's decay; "
                "`research/campaign.py`)\n\n| run | CPU-hours | images | BD-rate vs JPEG |\n|---|---:|---:|---:|\n" + rows + "\n")
    evals = card.get("training_curve", [])
    if not evals:
        return ""
    qs = " | ".join(f"{q}" for q in evals[-1]["eval"].keys())
    curve = "\n".join(f"| {r['step']} | {r['images']} | " + " | ".join(f"{v[0]:.3f} / {v[1]:.2f}" for v in r["eval"].values())
                      + " |" for r in evals)
    return (f"## Training curve (periodic real-bitstream evaluation on 4 Kodak images: bpp / PSNR)\n\n"
            f"| step | images | {qs} |\n|---|---|{'---|' * max(1, len(qs.split('|')))}\n{curve}\n")


TABLE_HEADER = ["| weights | model | where | CPU-hours | Kodak q 1: bpp / dB | q 8: bpp / dB |",
                "|---|---|---|---:|---:|---:|"]


def table_row(wid: str, entry: dict, default: str) -> str:
    """One released set: its card (linked while the package ships it), where it is, its figures."""
    c = entry.get("card", {})
    packaged = entry["source"] == "package"
    name = f"[`{wid}`]({wid}.md)" if packaged else f"`{wid}`"
    where = ("**default**, in the package" if wid == default else
             "in the package" if packaged else f"retired: {entry['source'].split(',')[0]}")
    low, high = c.get("kodak_q1"), c.get("kodak_q8")
    return (f"| {name} | `{entry['model']}` | {where} | {c.get('cpu_hours', '')} | "
            f"{f'{low[0]:.3f} / {low[1]:.2f}' if low else ''} | {f'{high[0]:.3f} / {high[1]:.2f}' if high else ''} |")


def update_index(text: str, manifest: dict) -> str:
    """``weights/README.md`` with its table of released weights brought up to date with the
    manifest; the prose around it is left as it is. The default comes first, then the others in the
    order the table had them (the default just retired first: newest first), then any it lacked."""
    lines = text.splitlines()
    try:
        start = lines.index(TABLE_HEADER[0]) + 2
    except ValueError:
        raise SystemExit("weights_card: weights/README.md has no table of released weights "
                         f"(a line {TABLE_HEADER[0]!r}); add one, rows may be empty") from None
    end = start
    while end < len(lines) and lines[end].startswith("| "):
        end += 1
    listed = [line.split("`")[1] for line in lines[start:end] if "`" in line]
    default, released = manifest["default"], manifest["weights"]
    order = [default] + [w for w in listed if w in released and w != default]
    order += [w for w in released if w not in order]
    rows = [table_row(wid, released[wid], default) for wid in order]
    return "\n".join(lines[:start] + rows + lines[end:]) + "\n"


if __name__ == "__main__":
    sys.exit(main())
