"""Ship new weights as the default: the steps a shipment takes, in order, resumable.

    python -m tools.release.ship runs/base-convhaar/weights/ssic-convhaar-XXXXXXXX.pt --dry-run   # the plan
    python -m tools.release.ship WEIGHTS                    # all of it (about an hour and a half on 2 cores)
    python -m tools.release.ship WEIGHTS --from speed       # go on after a step that failed or was stopped

A shipment edits data, never Python source. It puts the file in the package
(``ssic_cli/weights_data/``) and records it in the weights manifest there (``manifest.json``: a new
entry, and ``"default"``); the previous default retires: its file leaves the package for the
checkout's ``weights/`` (which git ignores, so this checkout still decodes its files) and its entry
names the release that holds it. Then it makes the golden files (CI decodes them forever after),
re-runs every benchmark whose numbers README shows for the default (Kodak and held-out
rate–distortion, speed, portability, remote fetch, tiles, COCO ROI) and writes the default's card
from the Kodak run. It stops at the first step that fails. What it does not do: edit README's
tables and prose (the numbers are in ``bench/results/``; ``python -m tools.release.ship_report``
prints them against the previous shipment's; say what changed) and commit. The rule it does not
check: ship only ≥ 1 BD-rate point over the default.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ssic_cli import __version__
from ssic_cli import weights as released

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def steps() -> list[tuple[str, list[list[str]]]]:
    """(step, commands) in the order a shipment runs them (make targets where there are some)."""
    py = lambda *args: [PYTHON, *args]                                        # noqa: E731
    return [
        ("golden", [py("tests/golden/make_golden.py")]),
        ("rd", [["make", "bench-rd"]]),
        ("holdout", [["make", "bench-rd-holdout"]]),
        ("speed", [["make", "bench-speed"]]),
        ("portability", [py("-m", "bench.portability", "--out", "bench/results/portability.json")]),
        ("remote", [py("-m", "bench.remote_fetch", "--out", "bench/results/remote_fetch.json")]),
        ("tiles", [py("-m", "bench.tiles")]),
        ("roi", [["make", "bench-roi"]]),
        ("card", [py("-m", "tools.release.weights_card", "--from-rd", "bench/results/rd_kodak.json",
                     "--campaign", "research/results/campaign.json")]),
    ]


STEP_NAMES = ["weights"] + [s for s, _ in steps()]


# ----- the manifest: data in, data out ------------------------------------------------------------
def read_manifest(path: Path) -> dict:
    return json.loads(path.read_text())


def write_manifest(path: Path, manifest: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)


def manifest_entry(weights: Path, blob: dict) -> dict:
    """A new default's entry: what it is, its bytes, where it is; the Kodak figures of its card
    come later, from the ``card`` step's measurements."""
    wid = weights.stem
    return {"model": blob["model_id"], "sha256": released.file_hash(weights).hex(),
            "bytes": weights.stat().st_size, "source": "package",
            "card": {"cpu_hours": blob.get("card", {}).get("cpu_hours"), "details": f"weights/{wid}.md"}}


def with_default(manifest: dict, wid: str, entry: dict, version: str = __version__) -> tuple[dict, "str | None"]:
    """The manifest with ``wid`` added as the default, and the id of the default it retires (None
    when the default does not change). The retired entry names the release whose source tree holds
    its file and card: ``version``, the release that shipped it."""
    new = copy.deepcopy(manifest)
    old = new["default"]
    new["weights"][wid] = entry
    new["default"] = wid
    if old == wid or new["weights"].get(old, {}).get("source") != "package":
        return new, None
    tree = f"ssic v{version} source tree"
    retired = new["weights"][old]
    retired["source"] = f"{tree}, ssic_cli/weights_data/{old}.pt"
    retired.setdefault("card", {})["details"] = f"{tree}, weights/{old}.md"
    return new, old


# ----- the steps ------------------------------------------------------------------------------------
def checked(weights: Path) -> dict:
    """The stored blob of a weights file as export writes it (``<model id>-<hash8>.pt``), else exit."""
    from ssic_cli.errors import SsicError
    try:
        blob = released.read_weights_file(weights)
    except SsicError as exc:
        raise SystemExit(f"ship: {exc}") from None
    expected = f"{released.weights_id(blob['model_id'], released.file_hash(weights))}.pt"
    if weights.name != expected:
        raise SystemExit(f"ship: {weights} should be named {expected} (ssic train --export names it)")
    return blob


def install(weights: Path, blob: dict, package: Path = released.PACKAGE_DIR, checkout: Path = ROOT) -> "str | None":
    """Copy the file into the package, make it the manifest's default and retire the previous
    default's file and card from the tree (``weights/<id>.pt`` stays here, ignored by git).
    Returns the retired id, if any."""
    manifest_path = package / released.MANIFEST.name
    manifest, retired = with_default(read_manifest(manifest_path), weights.stem, manifest_entry(weights, blob))
    target = package / weights.name
    if target.resolve() != weights.resolve():
        shutil.copyfile(weights, target)
    write_manifest(manifest_path, manifest)
    if retired:
        kept = checkout / "weights"
        kept.mkdir(exist_ok=True)
        old = package / f"{retired}.pt"
        if old.exists():
            old.replace(kept / old.name)
        (package / f"{retired}.json").unlink(missing_ok=True)         # its card's measurements
        (kept / f"{retired}.md").unlink(missing_ok=True)              # its card: in the release that shipped it
    return retired


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
    ap = argparse.ArgumentParser(prog="python -m tools.release.ship", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path, help="the exported weights file (ssic train --export)")
    ap.add_argument("--from", dest="first", choices=STEP_NAMES, default="weights", help="start at this step")
    ap.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    args = ap.parse_args(argv)
    blob = checked(args.weights)
    todo = STEP_NAMES[STEP_NAMES.index(args.first):]
    if "weights" in todo:
        old = read_manifest(released.MANIFEST)["default"]
        print(f"[ship:weights] ssic_cli/weights_data/{args.weights.name} becomes the default in manifest.json"
              + (f"; {old} retires to weights/ (ignored by git)" if old != args.weights.stem else ""), flush=True)
        if not args.dry_run:
            install(args.weights, blob)
    for step, commands in steps():
        if step in todo:
            run(step, commands, args.dry_run)
    if args.dry_run:
        print("ship: dry run, nothing changed")
    else:
        print("ship: done; `python -m tools.release.ship_report` prints the figures before and after: update "
              "README's tables from it and commit ssic_cli/weights_data/, weights/, tests/golden/, bench/results/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
