"""Ship new weights as the default: the steps a shipment takes, in order, resumable.

    python bench/ship.py runs/base-convhaar/weights/ssic-convhaar-XXXXXXXX.pt --dry-run   # the plan
    python bench/ship.py WEIGHTS                    # all of it (about an hour and a half on 2 cores)
    python bench/ship.py WEIGHTS --from speed       # go on after a step that failed or was stopped

A shipment puts the file in ``weights/``, makes it ``DEFAULT_WEIGHTS``, makes its golden files (CI
decodes them forever after), re-runs every benchmark whose numbers README shows for the default
(Kodak and held-out rate–distortion, speed, portability, remote fetch, tiles, COCO ROI) and
rewrites the weights cards from the Kodak run. It stops at the first step that fails. What it
does not do: edit README's tables and prose (the numbers are in ``bench/results/``;
``bench/ship_report.py`` prints them against the previous shipment's; say what changed) and
commit. The rule it does not check: ship only ≥ 1 BD-rate point over the default.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
WEIGHTS_PY = ROOT / "ssic_cli/weights.py"
_DEFAULT_LINE = re.compile(r'^DEFAULT_WEIGHTS = "([^"]+)"$', re.M)


def steps() -> list[tuple[str, list[list[str]]]]:
    """(step, commands) in the order a shipment runs them (make targets where there are some)."""
    py = lambda *args: [PYTHON, *args]                                        # noqa: E731
    return [
        ("golden", [py("tests/golden/make_golden.py")]),
        ("rd", [["make", "bench-rd"]]),
        ("holdout", [["make", "bench-rd-holdout"]]),
        ("speed", [["make", "bench-speed"]]),
        ("portability", [py("bench/portability.py", "--out", "bench/results/portability.json")]),
        ("remote", [py("bench/remote_fetch.py", "--out", "bench/results/remote_fetch.json")]),
        ("tiles", [py("bench/tiles.py")]),
        ("roi", [["make", "bench-roi"]]),
        ("card", [py("bench/weights_card.py", "--from-rd", "bench/results/rd_kodak.json",
                     "--campaign", "bench/results/campaign.json")]),
    ]


STEP_NAMES = ["weights"] + [s for s, _ in steps()]


def with_default(source: str, name: str) -> str:
    """``ssic_cli/weights.py``'s text with ``DEFAULT_WEIGHTS`` set to ``name``."""
    if len(_DEFAULT_LINE.findall(source)) != 1:
        raise SystemExit(f"ship: {WEIGHTS_PY} does not hold exactly one DEFAULT_WEIGHTS line")
    return _DEFAULT_LINE.sub(f'DEFAULT_WEIGHTS = "{name}"', source)


def checked(weights: Path) -> Path:
    """A weights file as export writes it (``<model id>-<hash8>.pt``, loadable), else exit."""
    from ssic_cli.errors import SsicError
    from ssic_cli.weights import file_hash, read_weights_file
    try:
        blob = read_weights_file(weights)
    except SsicError as exc:
        raise SystemExit(f"ship: {exc}") from None
    expected = f"{blob['model_id']}-{file_hash(weights).hex()[:8]}.pt"
    if weights.name != expected:
        raise SystemExit(f"ship: {weights} should be named {expected} (ssic train --export names it)")
    return weights


def install(weights: Path) -> None:
    """Copy the file into weights/ and make it the default."""
    target = ROOT / "weights" / weights.name
    if target.resolve() != weights.resolve():
        shutil.copyfile(weights, target)
    WEIGHTS_PY.write_text(with_default(WEIGHTS_PY.read_text(), weights.name))


def run(step: str, commands: list[list[str]], dry_run: bool) -> None:
    for cmd in commands:
        print(f"[ship:{step}] {' '.join(cmd)}", flush=True)
        if dry_run:
            continue
        start = time.time()
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:
            raise SystemExit(f"ship: step {step} failed; fix it and go on with --from {step}")
        print(f"[ship:{step}] done in {time.time() - start:.0f} s", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path, help="the exported weights file (ssic train --export)")
    ap.add_argument("--from", dest="first", choices=STEP_NAMES, default="weights", help="start at this step")
    ap.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    args = ap.parse_args(argv)
    weights = checked(args.weights)
    todo = STEP_NAMES[STEP_NAMES.index(args.first):]
    if "weights" in todo:
        print(f"[ship:weights] weights/{weights.name} becomes DEFAULT_WEIGHTS", flush=True)
        if not args.dry_run:
            install(weights)
    for step, commands in steps():
        if step in todo:
            run(step, commands, args.dry_run)
    if args.dry_run:
        print("ship: dry run, nothing changed")
    else:
        print("ship: done; `python bench/ship_report.py` prints the figures before and after: update README's "
              "tables from it and commit weights/, tests/golden/, bench/results/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
