"""Paired training arms against their control: the comparison every training probe reports.

A probe trains a few arms from one weights file with the same seed (same crops, masks, qualities,
noise), the same budget and schedule, side by side on one machine, differing in one option; each
arm is measured like a campaign stretch (``python -m research.campaign evaluate``: Kodak, 6 qualities, real
``.ssb`` bytes), which writes a ``*.row.json``. This script puts the rows side by side::

    python -m research.probes.paired_arms OUT.json CONTROL.row.json ARM.row.json [ARM.row.json …]

For every arm: BD-rate against JPEG, WebP and the control, the rate it needs at each quality
against the control and against WebP (at equal PSNR; ``bdrate.rate_gaps``). WebP's curve is the
one of the last ``make bench-rd`` (``bench/results/rd_kodak.json``). The probes that use it and
their commands: ``rate_proxy.py``, ``quality_balance.py``.
"""
import json
import sys
from pathlib import Path

from bench.bdrate import bd_rate_curves, rate_gaps

CLASSIC = Path("bench/results/rd_kodak.json")
ROW_FIELDS = ("model", "weights", "steps", "cpu_hours", "bd_rate_vs_jpeg", "bd_rate_vs_webp", "points")


def _rounded(values):
    return [None if v is None else round(v, 2) for v in values]


def summarise(row: dict, control: dict, webp: list[dict]) -> dict:
    summary = {k: row.get(k) for k in ROW_FIELDS}
    if row is not control:
        summary["bd_rate_vs_control"] = round(bd_rate_curves(control["points"], row["points"]), 2)
        summary["rate_change_vs_control"] = _rounded(rate_gaps(control["points"], row["points"]))
    summary["rate_gap_vs_webp"] = _rounded(rate_gaps(webp, row["points"]))
    return summary


def compare(control: dict, arms: list[dict], classic: dict) -> dict:
    webp = classic["curves"]["webp"]
    return {
        "q": [p["q"] for p in control["points"]],
        "control": summarise(control, control, webp),
        "arms": {arm["model"]: summarise(arm, control, webp) for arm in arms},
        "webp_from": str(CLASSIC),
    }


def brief(result: dict) -> str:
    """One line per arm: what a reader compares first."""
    lines = [f"q: {result['q']}"]
    for name, arm in [("control " + result["control"]["model"], result["control"]), *result["arms"].items()]:
        vs_control = "" if "bd_rate_vs_control" not in arm else (
            f", vs control {arm['bd_rate_vs_control']:+.2f} % (per q {arm['rate_change_vs_control']})")
        lines.append(f"{name}: {arm['bd_rate_vs_jpeg']} % vs JPEG{vs_control}; vs WebP per q {arm['rate_gap_vs_webp']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3:
        sys.exit(__doc__)
    control, *arms = (json.loads(Path(p).read_text()) for p in argv[1:])
    result = compare(control, arms, json.loads(CLASSIC.read_text()))
    Path(argv[0]).write_text(json.dumps(result, indent=1) + "\n")
    print(brief(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
