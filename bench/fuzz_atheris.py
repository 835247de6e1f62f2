"""Coverage-guided fuzzing (atheris / libFuzzer) of the .ssb reader and the per-group decoder setup.

Every input goes through ``container.read_ssb``, then for each present group ``SsbFile.section``
and ``crypto.open_section`` with a keyring of two keys (the golden key among them); inputs that
parse as a small image (≤ 256 × 256 pixels, ≤ 8 kB) are also decoded whole by ``codec.decode``
with those keys. Anything but an ``SsicError`` is a crash, and so is an input that runs past
``--timeout`` seconds (libFuzzer's timeout) or past libFuzzer's memory limit. The seed corpus is
the golden files of the shipped weights (``tests/golden/<weights>/*.ssb``), copied to a work
directory so the repository is never written to. Three in four mutated inputs get their header
CRC and section CRC-32s recomputed (``fix_crcs``), so the fuzzer reaches past the checksums.

    python -m bench.fuzz_atheris --seconds 120          # what CI runs (.ci/run)
    python -m bench.fuzz_atheris --runs 100000 --corpus /tmp/ssb-corpus

The parent process runs libFuzzer in a child, reads its report and prints one summary line
(``atheris: N runs in S s, K crashes``); it exits 1 on a crash or hang (the input is saved under
``--artifacts`` with a one-line reproduction command) and 0 otherwise. Key derivations are
budgeted per input (``KDF_WORK``): a forged file may ask for the highest scrypt cost the reader
accepts, which costs ~0.5 s a try — fine for one decode, not for a fuzzer's thousands a second.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_KEY = ROOT / "tests" / "golden" / "golden.key"
DECODE_MAX_PIXELS = 256 * 256       # inputs that parse as larger images stop after open_section
DECODE_MAX_BYTES = 8192
MAX_LEN = 16384                     # longest input libFuzzer makes (the seeds are ~1–2 kB)


def _setup():
    """Import ssic under atheris' instrumentation; return the per-input function."""
    import atheris
    import numpy  # noqa: F401 - imported uninstrumented
    import torch
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    with atheris.instrument_imports(include=["ssic_cli"]):
        from ssic_cli import codec, container, crypto
        from ssic_cli.errors import SsicError
    from ssic_cli.weights import load_weights
    load_weights()                                  # once, outside the per-input cost
    kdf_work = 4 * crypto.FAST_KDF.work             # per input: 4 cheap derivations, no costly one
    crypto.KDF_BUDGET = kdf_work                    # codec.decode's own keyring
    keys = [crypto.key_from_bytes(GOLDEN_KEY.read_bytes() if GOLDEN_KEY.is_file() else b"k" * 32),
            crypto.key_from_bytes(b"atheris fuzz key, 32 bytes ....")]

    def one_input(data: bytes) -> None:
        try:
            ssb = container.read_ssb(data)
            hdr = ssb.header
            keyring = crypto.Keyring(keys, budget=kdf_work)
            for i, g in enumerate(hdr.groups):
                if not g.present:
                    continue
                try:
                    crypto.open_section(hdr, i, ssb.section(i), keyring)
                except SsicError:
                    pass
            if hdr.width * hdr.height <= DECODE_MAX_PIXELS and len(data) <= DECODE_MAX_BYTES:
                codec.decode(ssb, keys=keys)
        except SsicError:
            pass

    return atheris, one_input


def fix_crcs(data: bytes) -> bytes:
    """``data`` with its header CRC and section CRC-32s recomputed (lengths left as they are),
    when its structure can be walked; else ``data`` unchanged. Byte-level mutations almost always
    break the header CRC, and the reader stops there: fixing it lets coverage guidance explore
    the checks behind it (meaning of the header, index, sections, decoder setup)."""
    from .fuzz import Raw
    try:
        raw = Raw(data)
        for g, section in enumerate(raw.sections):
            if section is not None:
                raw.set(f"i{g}.crc", zlib.crc32(section))
        return raw.dump(fix_crc=True)
    except Exception:  # noqa: BLE001 - a structure Raw cannot walk: leave it to the reader
        return data


def _child(libfuzzer_args: list[str]) -> None:
    atheris, one_input = _setup()

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        data = atheris.Mutate(data, max_size)
        return fix_crcs(data)[:max_size] if seed % 4 else data      # 3 in 4 inputs get their CRCs fixed

    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input, custom_mutator=mutator)
    atheris.Fuzz()


def _seed_corpus(into: Path) -> int:
    """Copy the golden .ssb files of the shipped weights (of every weights when none match)."""
    golden = ROOT / "tests" / "golden"
    try:
        from ssic_cli.weights import load_weights
        own = sorted((golden / load_weights().path.stem).glob("*.ssb"))
    except Exception:  # noqa: BLE001 - no weights: any golden files will do as seeds
        own = []
    files = own or sorted(golden.glob("*/*.ssb"))
    for f in files:
        shutil.copy(f, into / f"{f.parent.name}-{f.name}")
    return len(files)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fuzz_atheris", description=__doc__.split("\n\n")[0],
                                 allow_abbrev=False)
    ap.add_argument("--seconds", type=int, help="stop after this many seconds (libFuzzer -max_total_time)")
    ap.add_argument("--runs", type=int, help="stop after this many inputs (libFuzzer -runs)")
    ap.add_argument("--timeout", type=int, default=20, help="seconds one input may take before it counts as a hang")
    ap.add_argument("--rss-mb", type=int, default=3072, help="memory the fuzzing process may hold (MB)")
    ap.add_argument("--corpus", type=Path, help="corpus directory to grow and keep (default: a temporary one)")
    ap.add_argument("--artifacts", type=Path, default=Path("bench/results/atheris"),
                    help="where a crashing or hanging input is saved")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args(argv)
    if args.child:
        _child(rest)
        return 0
    if args.seconds is None and args.runs is None:
        ap.error("give --seconds or --runs (the fuzzer must stop by itself)")
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: pip install 'ssic[test]' (or pip install atheris)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="ssic-atheris-") as tmp:
        corpus = args.corpus or Path(tmp) / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        seeds = _seed_corpus(corpus)
        crash_dir = Path(tmp) / "crashes"
        crash_dir.mkdir()
        fuzz_args = [f"-timeout={args.timeout}", f"-rss_limit_mb={args.rss_mb}", f"-max_len={MAX_LEN}",
                     f"-seed={args.seed}", f"-artifact_prefix={crash_dir}/", "-print_final_stats=1"]
        if args.seconds is not None:
            fuzz_args.append(f"-max_total_time={args.seconds}")
        if args.runs is not None:
            fuzz_args.append(f"-runs={args.runs}")
        cmd = [sys.executable, "-m", "bench.fuzz_atheris", "--child", *fuzz_args, str(corpus)]
        start = time.time()
        # A hard stop above libFuzzer's own, in case the child wedges outside an input.
        limit = args.seconds + args.timeout + 120 if args.seconds is not None else None
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, errors="replace", timeout=limit)
            log, code = proc.stdout, proc.returncode
        except subprocess.TimeoutExpired as exc:
            log = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            code = "killed"
        elapsed = time.time() - start
        runs = _runs(log)
        artifacts = sorted(crash_dir.iterdir())
        crashed = code != 0 or bool(artifacts)
        saved = []
        if artifacts:
            args.artifacts.mkdir(parents=True, exist_ok=True)
            for a in artifacts:
                shutil.copy(a, args.artifacts / a.name)
                saved.append(args.artifacts / a.name)
    if crashed:
        sys.stderr.write(_tail(log))
    kinds = sorted(set(re.findall(r"==\d+== ERROR: libFuzzer: (.+)", log))
                   | ({"Python exception"} if "Uncaught Python exception" in log else set()))
    print(f"atheris: {runs} runs in {elapsed:.0f} s from {seeds} seeds, {1 if crashed else 0} crashes"
          + (f" ({', '.join(kinds) or f'exit {code}'})" if crashed else ""))
    for s in saved:
        print(f"  input saved: {s} (reproduce: python -m bench.fuzz_atheris --child {s})")
    return 1 if crashed else 0


def _runs(log: str) -> int:
    """Inputs run, from libFuzzer's final stats (or its last progress line)."""
    done = re.findall(r"Done (\d+) runs", log) or re.findall(r"stat::number_of_executed_units: (\d+)", log)
    if done:
        return int(done[-1])
    progress = re.findall(r"^#(\d+)\s", log, re.M)
    return int(progress[-1]) if progress else 0


def _tail(log: str, lines: int = 60) -> str:
    return "\n".join(log.splitlines()[-lines:]) + "\n"


if __name__ == "__main__":
    sys.exit(main())
