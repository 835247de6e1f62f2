"""What a shipment changed: the default's benchmark figures now against those at a git revision.

    python -m tools.release.ship_report                 # bench/results/ now against the last commit
    python -m tools.release.ship_report --before e5a2aac

``python -m tools.release.ship`` re-runs every benchmark README shows for the default and leaves README's tables
and prose to a person. This prints, as Markdown, the figures those tables and the closing note need
— each result file's headline numbers before and after, and the rate–distortion curves of the two
weights measured *directly* against each other (bitstreams do not depend on the CPU, so a curve
from another machine is a fair reference). It reads only ``bench/results/`` and ``git show``;
nothing is written.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.bdrate import bd_rate
from bench.common import RESULTS, ROOT

RD_VERSUS = ["jpeg", "webp", "avif", "jxl", "heic", "published:bmshj2018-hyperprior", "published:vtm"]


def load(name: str, rev: str | None) -> dict | None:
    """A result file as of ``rev`` (``None``: the working tree); ``None`` when it did not exist."""
    if rev is None:
        path = RESULTS / name
        return json.loads(path.read_text()) if path.exists() else None
    shown = subprocess.run(["git", "show", f"{rev}:bench/results/{name}"], cwd=ROOT, capture_output=True, text=True)
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def weights_of(result: dict | None) -> str:
    if not result:
        return "—"
    meta = result.get("meta", result)
    w = meta.get("weights", "—")
    return Path(w["path"] if isinstance(w, dict) else w).stem


def curve(result: dict, name: str = "ssic", qualities: tuple[float, float] | None = None):
    points = [p for p in result["curves"][name]
              if qualities is None or qualities[0] <= p["q"] <= qualities[1]]
    return [p["bpp"] for p in points], [p["psnr"] for p in points]


def direct(after: dict, before: dict, qualities=None) -> float:
    """BD-rate of the new ssic curve against the old one, optionally over a quality range."""
    return bd_rate(*curve(before, qualities=qualities), *curve(after, qualities=qualities))


def rd_section(title: str, name: str, before_rev: str) -> list[str]:
    after, before = load(name, None), load(name, before_rev)
    if not after:
        return [f"## {title}: no {name}"]
    lines = [f"## {title} (`{name}`)", "",
             f"weights {weights_of(before)} → **{weights_of(after)}**; run {after['meta']['date']}, "
             f"{after['meta']['run_s']:.0f} s", "",
             "| q | " + " | ".join(f"{p['q']:g}" for p in after["curves"]["ssic"]) + " |",
             "|---|" + "---|" * len(after["curves"]["ssic"]),
             "| bpp | " + " | ".join(f"{p['bpp']:.3f}" for p in after["curves"]["ssic"]) + " |",
             "| PSNR | " + " | ".join(f"{p['psnr']:.2f}" for p in after["curves"]["ssic"]) + " |", "",
             "| ssic vs | before | after |", "|---|---:|---:|"]
    for codec in RD_VERSUS:
        old = before["bd_rate"]["ssic_vs"].get(codec, {}).get("bd_rate") if before else None
        new = after["bd_rate"]["ssic_vs"].get(codec, {}).get("bd_rate")
        if new is None:
            continue
        lines.append(f"| {codec} | {_pct(old)} | **{_pct(new)}** |")
    bd_psnr = after["bd_rate"]["ssic_vs"]["jpeg"]
    lines += ["", f"vs JPEG: BD-PSNR {bd_psnr['bd_psnr']:+.2f} dB over {bd_psnr['psnr_overlap'][0]:.1f}–"
                  f"{bd_psnr['psnr_overlap'][1]:.1f} dB"]
    if before and "ssic" in before["curves"]:
        top_old, top_new = before["curves"]["ssic"][-1], after["curves"]["ssic"][-1]
        lines.append(
            f"directly against {weights_of(before)}: **{direct(after, before):+.1f} %** "
            f"(q 1–3 {direct(after, before, (1, 3)):+.1f} %, q 5–8 {direct(after, before, (5, 8)):+.1f} %); "
            f"top quality {top_old['psnr']:.2f} → {top_new['psnr']:.2f} dB at "
            f"{100 * (top_new['bpp'] / top_old['bpp'] - 1):+.1f} % bits")
    lines += _per_quality(after, "webp")
    lines += _structuring(after, before)
    return lines + [""]


def _per_quality(after: dict, codec: str) -> list[str]:
    """Where along the curve the BD-rate against ``codec`` comes from (``bench.rd.per_quality_gaps``)."""
    gaps = after.get("per_quality", {}).get("vs", {}).get(codec)
    if not gaps:
        return []
    cells = [f"q {q:g} {_pct(g)}" for q, g in zip(after["per_quality"]["q"], gaps) if g is not None]
    return [f"vs {codec} at each quality (bits at equal PSNR): " + ", ".join(cells)]


def _structuring(after: dict, before: dict | None) -> list[str]:
    s = after.get("structuring")
    if not s:
        return []
    rows = s["per_quality"]
    old = before.get("structuring", {}).get("bd_rate_grouped_vs_single") if before else None
    return [f"structuring cost {_pct(old)} → **{s['bd_rate_grouped_vs_single']:+.2f} %** "
            f"({s['mean_groups']:.2f} groups/image): {min(r['overhead_bytes'] for r in rows):.0f}–"
            f"{max(r['overhead_bytes'] for r in rows):.0f} bytes per image "
            f"({rows[0]['overhead_pct']:+.2f} % at q {rows[0]['q']:g}, {rows[-1]['overhead_pct']:+.2f} % at "
            f"q {rows[-1]['q']:g}), PSNR {min(r['psnr_delta_db'] for r in rows):+.3f} to "
            f"{max(r['psnr_delta_db'] for r in rows):+.3f} dB"]


def speed_section(before_rev: str) -> list[str]:
    after, before = load("speed.json", None), load("speed.json", before_rev)
    if not after:
        return []
    old_rows = {r["case"]: r["seconds"] for r in (before or {}).get("rows", [])}
    lines = [f"## Speed (`speed.json`): {weights_of(before)} → {weights_of(after)}, torch {after['torch']}",
             "", "| case | before s | after s |", "|---|---:|---:|"]
    for r in after["rows"]:
        lines.append(f"| {r['case']} | {_num(old_rows.get(r['case']))} | **{r['seconds']:.3f}** |")
    full = next(r["seconds"] for r in after["rows"] if r["case"].startswith("decode, full"))
    ten = next(r["seconds"] for r in after["rows"] if "(10% of blocks)" in r["case"])
    lines += ["", f"10 % group / full decode: {ten / full:.2f}; peak RSS MiB "
                  + ", ".join(f"{k} {v:.0f}" for k, v in after["peak_rss_mb"].items())]
    for key in ("whole_process", "batch"):
        for r in after.get(key, []):
            tail = f"{r['images_per_s']:.2f} images/s (-j {r['jobs']})" if "jobs" in r else f"{r['seconds']:.2f} s"
            lines.append(f"- {r['command']}: {tail}")
    return lines + [""]


def portability_section() -> list[str]:
    p = load("portability.json", None)
    if not p:
        return []
    lines = [f"## Portability ({weights_of(p)})", "", "| kernels | latents | max diff | % differing |",
             "|---|---|---:|---:|"]
    for r in p["rows"]:
        same = "identical" if r["latents_identical"] else "**DIFFER**"
        lines.append(f"| {r['kernels']} | {same} | {r['max_pixel_diff']} | {r['differing_values_pct']:.4f} |")
    return lines + [""]


def remote_section() -> list[str]:
    r = load("remote_fetch.json", None)
    if not r:
        return []
    lines = [f"## Remote fetch: {r['file_bytes']:,} bytes, header {r['header_bytes']}", "",
             "| request | section | fetched | share | requests |", "|---|---:|---:|---:|---:|"]
    for row in r["rows"]:
        section = f"{row['section_bytes']:,}" if "section_bytes" in row else "–"
        lines.append(f"| {row['what']} | {section} | {row['fetched_bytes']:,} | "
                     f"{100 * row['fetched_bytes'] / row['file_bytes']:.1f} % | {row['requests']} |")
    return lines + [""]


def tiles_section() -> list[str]:
    t = load("tiles.json", None)
    if not t:
        return []
    lines = [f"## Tiles ({weights_of(t)}, {t['meta']['date']})", ""]
    for name, row in t["large_image"].items():
        lines.append(f"- {name} ({row['groups']} groups): encode {row['encode']['peak_mb']:,} MiB "
                     f"{row['encode']['seconds']:.0f} s, decode {row['decode']['peak_mb']:,} MiB "
                     f"{row['decode']['seconds']:.0f} s, {row['bpp']:.3f} bpp, {row['psnr']:.2f} dB")
    for name, row in t.get("seam_cost", {}).items():
        lines.append(f"- seam cost {name}: {row['bd_rate_pct']:+.2f} %")
    return lines + [""]


def roi_section(before_rev: str) -> list[str]:
    after, before = load("roi_coco.json", None), load("roi_coco.json", before_rev)
    if not after:
        return []
    lines = [f"## ROI on COCO: {weights_of(before)} → {weights_of(after)}", "",
             "| BD-rate (mask) | before | after |", "|---|---:|---:|"]
    for key, value in after["bd_rate"].items():
        old = (before or {}).get("bd_rate", {}).get(key, {}).get("mask")
        lines.append(f"| {key} | {_pct(old)} | **{_pct(value['mask'])}** |")
    d = after["details"]["person"]
    lines += ["", f"identical pixels selective/full: {d['identical_pixels']}/{d['images']}; band PSNR "
                  f"{d['band_psnr']['full']:.2f} vs one group {d['band_psnr']['one_group']:.2f}; interior "
                  f"{d['interior_psnr']['selective']:.2f} vs {d['interior_psnr']['one_group']:.2f}; bits vs one "
                  f"group {100 * (d['bits_vs_one_group'] - 1):+.1f} %; full decode {d['full_decode_s']:.3f} s; "
                  + ", ".join(f"{a['area']} ({a['images']}) {a['median_s']:.3f} s" for a in d["selective_decode_s"])]
    lines += _top_points(after) + _downstream(after)
    return lines + [""]


def _top_points(result: dict) -> list[str]:
    person = result["curves"].get("person", {})
    if "ssic" not in person or "avif-crop" not in person:
        return []
    s, a = person["ssic"][-1], person["avif-crop"]
    crop = min(a, key=lambda p: abs(p["bpp"] - s["bpp"]))
    return [f"top: ssic {s['psnr']:.2f} dB at {s['bpp']:.2f} ROI bpp; nearest AVIF crop "
            f"{crop['psnr']:.2f} dB at {crop['bpp']:.2f}"]


def _downstream(result: dict) -> list[str]:
    """AP50 of ssic's selective decodes against the AVIF crop, interpolated linearly in bpp."""
    variants = result.get("downstream", {}).get("variants", {})
    crop = sorted((v["bpp"], v["ap50_box"], v["ap50_mask"]) for k, v in variants.items() if k.startswith("avif-crop@"))
    if not crop:
        return []
    bpp, box, mask = (np.array(c) for c in zip(*crop))
    lines = [f"downstream AP50 box/mask, original {variants['original']['ap50_box']:.3f} / "
             f"{variants['original']['ap50_mask']:.3f}:"]
    for name, v in variants.items():
        if name.startswith("ssic@"):
            inside = bpp[0] <= v["bpp"] <= bpp[-1]
            gap = (f"{v['ap50_box'] - np.interp(v['bpp'], bpp, box):+.3f} / "
                   f"{v['ap50_mask'] - np.interp(v['bpp'], bpp, mask):+.3f} vs AVIF crop" if inside else "outside crop range")
            lines.append(f"- {name}: {v['ap50_box']:.3f} / {v['ap50_mask']:.3f} at {v['bpp']:.2f} bpp ({gap})")
    lines += [f"- {k}: {v['ap50_box']:.3f} / {v['ap50_mask']:.3f} at {v['bpp']:.2f} bpp"
              for k, v in variants.items() if k.startswith("avif")]
    return lines


def _pct(x) -> str:
    return "—" if x is None else f"{x:+.1f} %"


def _num(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.release.ship_report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="HEAD", help="git revision holding the previous shipment's results")
    args = parser.parse_args(argv)
    lines = (rd_section("Kodak", "rd_kodak.json", args.before)
             + rd_section("Held-out photos", "rd_holdout.json", args.before)
             + speed_section(args.before) + portability_section() + remote_section()
             + tiles_section() + roi_section(args.before))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
