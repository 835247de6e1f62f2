"""The ``ssic`` command line: parse, call the library, print. Nothing else lives here.

Exit codes: 0 success, 1 usage error, 2 bad input or data (unreadable image, damaged or
forged .ssb, unknown group, mismatched weights), 3 internal error, 4 incomplete decode (the
image was written, but some wanted groups are missing from it: damaged, undecodable, sealed
without a key, extracted away, or shown scrambled; ``--allow-missing`` turns this into 0),
130 interrupted (Ctrl-C), 143 terminated (SIGTERM). Warnings of the libraries underneath (torch,
compressai) are not shown unless ``SSIC_DEBUG`` is set: they are not the user's business.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import threading
import warnings
from pathlib import Path

import click

from . import __version__
from .errors import SsicError
from .limits import QUALITY_MAX, QUALITY_MIN

EXIT_USAGE, EXIT_DATA, EXIT_INTERNAL, EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 3, 4, 130, 143
# Per effort level: measured time and gain (docs/effort.md has the table and how it was made).
EFFORT_HELP = ("Measured per level (seconds per megapixel, BD-rate vs -e 0; 2–3 Kodak images, 2 threads of a "
               "2-core AVX2 CPU): 1: 31 s, −0.6 %; 2: 52 s, −1.3 %; 3: 70 s, −1.9 %; 4: 96 s, −2.8 %; 5: 129 s, "
               "−4.9 %; 6: 186 s, −6.0 %; 7: 372 s, −7.3 %; 8: 763 s, −8.4 %; 9: 1614 s, −10.2 %. Table: "
               "docs/effort.md.")
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _split_names(values: tuple[str, ...]) -> list[str]:
    """--groups a,b --groups c -> [a, b, c]."""
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def _wanted_groups(values: tuple[str, ...]) -> list[str] | None:
    """--groups as given: None when the option is absent; naming nothing is a usage error, not
    "every group" (``-g ""`` from an empty shell variable must not decode everything)."""
    if not values:
        return None
    names = _split_names(values)
    if not names:
        raise click.UsageError("--groups names no group")
    return names


class Terminated(SystemExit):
    """SIGTERM as an exception, so that it unwinds like Ctrl-C: atomic writes remove their
    temporary file on the way out, and no ``except Exception`` swallows it. A SystemExit, so a
    batch worker stopped between two files exits quietly with its code."""

    def __init__(self):
        super().__init__(EXIT_TERMINATED)


def _raise_terminated(signum, frame):
    raise Terminated()


class Quality(click.FloatRange):
    """A quality in range; NaN is refused (it passes every range comparison)."""

    def convert(self, value, param, ctx):
        import math
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a number in the range {self.min:g}<=x<={self.max:g}", param, ctx)
        return number


class Reporter:
    """stderr diagnostics honouring --quiet / --verbose."""

    def __init__(self, quiet: bool = False, verbose: bool = False):
        self.quiet, self.verbose = quiet, verbose

    def info(self, msg: str) -> None:
        if not self.quiet:
            click.echo(msg, err=True)

    def warn(self, msg: str) -> None:
        click.echo(f"ssic: warning: {msg}", err=True)

    def debug(self, msg: str) -> None:
        if self.verbose and not self.quiet:
            click.echo(msg, err=True)


@click.group(context_settings=CONTEXT, epilog="""\b
Examples:
  ssic encode photo.jpg -o photo.ssb -q 4
  ssic inspect photo.ssb
  ssic decode photo.ssb -o person.png --groups person
  ssic extract photo.ssb --groups person -o person.ssb
""")
@click.version_option(__version__, "-V", "--version", prog_name="ssic")
def cli():
    """ssic — semantically structured image compression.

    An image is split into groups (person, car, background …); each group is coded into its
    own section of the .ssb file, so any subset can be sent, decoded or dropped on its own.
    """


_GROUP_OPTIONS = ("mask_path", "names_path", "boxes_path", "coco_path", "detector", "detector_weights", "block_size",
                  "coverage", "group_by", "classes", "priority_classes", "min_score", "max_groups")


def group_options(fn):
    """The options that choose the groups (shared by ``encode`` and ``mask``), handed to the
    command as two values: ``sources`` (a ``detect.RegionSources``) and ``policy`` (a
    ``mask.GroupPolicy``). Ranges and defaults are the policy's own."""
    from . import mask as m

    @functools.wraps(fn)
    def command(*args, **kwargs):
        kwargs["sources"], kwargs["policy"] = _grouping(**{k: kwargs.pop(k) for k in _GROUP_OPTIONS})
        return fn(*args, **kwargs)

    for opt in reversed([
        click.option("--mask", "mask_path", type=click.Path(path_type=Path), help="PNG label map, one group id per pixel."),
        click.option("--names", "names_path", type=click.Path(path_type=Path),
                     help="Names of the label ids (JSON {id: name} or 'id name' lines)."),
        click.option("--boxes", "boxes_path", type=click.Path(path_type=Path), help="JSON list of {label, box:[x0,y0,x1,y1]}."),
        click.option("--coco", "coco_path", type=click.Path(path_type=Path),
                     help="COCO instances.json; the image is found by file name."),
        click.option("--detector", shell_complete=_complete_detectors,
                     help="Detector plugin (list them with: ssic detectors). Default: yolo (its weights found here, "
                     "or downloaded once where there is a network), else the best weight-free detector; "
                     "'none' = one group."),
        click.option("--detector-weights", type=click.Path(path_type=Path),
                     help="Weights for the detector (a YOLO .pt/.tflite; or set SSIC_YOLO_WEIGHTS)."),
        click.option("-b", "--block-size", type=click.Choice([str(b) for b in m.BLOCK_SIZES]),
                     default=str(m.DEFAULT_BLOCK_SIZE), show_default=True, help="Block size of the group mask in pixels."),
        click.option("--coverage", type=click.FloatRange(*m.COVERAGE_RANGE), default=m.GroupPolicy.coverage,
                     show_default=True,
                     help="A block joins a region's group when the region covers more than this fraction of it: "
                     "0 = any overlap (some background is coded with each object); higher values save bits but "
                     "may cut object edges. Which group wins a block several objects share: see --priority."),
        click.option("--group-by", type=click.Choice(m.GROUP_BY), default=m.GroupPolicy.group_by, show_default=True,
                     help="One group per class (overlapping objects merged) or per instance (person, person#2, …)."),
        click.option("--classes", help="Keep only these classes, comma-separated (e.g. person,car); they also "
                     "get priority (see --priority)."),
        click.option("--priority", "priority_classes", default=",".join(m.DEFAULT_PRIORITY), show_default=True,
                     help="Classes whose group takes every block any of their pixels touches and wins the blocks "
                     "it shares with other objects, the first listed first (comma-separated; 'none' for no "
                     "priority): 'extract --groups person' then carries every person pixel. Sealed and scrambled "
                     "classes always come first."),
        click.option("--min-score", type=click.FloatRange(*m.MIN_SCORE_RANGE), default=m.DEFAULT_MIN_SCORE,
                     show_default=True, help="Minimum detection score."),
        click.option("--max-groups", type=click.IntRange(1, m.MAX_GROUPS), default=m.DEFAULT_MAX_GROUPS,
                     show_default=True, help="Cap on the number of groups."),
    ]):
        command = opt(command)
    return command


def alpha_option(fn):
    """--alpha: what to do with transparent pixels (shared by ``encode`` and ``mask``, which
    shows what encode would group)."""
    from .imageio import ALPHA_MODES
    return click.option("--alpha", type=click.Choice(ALPHA_MODES), default=ALPHA_MODES[0], show_default=True,
                        help="Transparent pixels (alpha is not coded): refuse the image, flatten it onto white, "
                        "or ignore alpha and code the colours it hides. A fully opaque alpha is always fine.")(fn)


def _complete_detectors(ctx, param, incomplete):
    from .detect import detector_names
    return [n for n in ["none", *detector_names()] if n.startswith(incomplete)]


def _grouping(mask_path, names_path, boxes_path, coco_path, detector, detector_weights, block_size, coverage,
              group_by, classes, priority_classes, min_score, max_groups):
    """The group options as (RegionSources, GroupPolicy); bad values are usage errors."""
    from .detect import RegionSources
    from .mask import GroupPolicy
    wanted = _split_names((classes,)) if classes else None
    priority = [n for n in _split_names((priority_classes or "",)) if n.lower() != "none"]
    sources = RegionSources(detector=detector, weights=detector_weights, mask_path=mask_path, names_path=names_path,
                            boxes_path=boxes_path, coco_path=coco_path)
    try:
        policy = GroupPolicy(block_size=int(block_size), coverage=coverage, group_by=group_by, classes=wanted,
                             min_score=min_score, max_groups=max_groups, priority=(*priority, *(wanted or ())))
    except SsicError as exc:
        raise click.UsageError(str(exc)) from None
    return sources, policy


# ----- encode ----------------------------------------------------------------------------------
@cli.command(context_settings=CONTEXT, epilog="""\b
Examples:
  ssic encode photo.jpg -o photo.ssb                   # detector picks the groups
  ssic encode photo.jpg -o photo.ssb -q 6.5 --mask labels.png --names names.json
  ssic encode photo.jpg -o photo.ssb --boxes boxes.json --block-size 32
  ssic encode photo.jpg -o photo.ssb -e 32                 # slower encode, smaller file
  ssic encode *.jpg -d out/                            # batch, one line per failure
  ssic encode *.jpg -d out/ -j 2                       # 2 worker processes, one torch thread each
  cat photo.jpg | ssic encode - -o - > photo.ssb       # pipes: - is stdin / stdout
  ssic encode photo.jpg -o photo.ssb --seal person --key-file k1.key
  ssic encode photo.jpg -o photo.ssb --seal person:k1.key --seal face:k2.key
  ssic encode photo.jpg -o photo.ssb --scramble person --passphrase-env SSIC_PASS   # passphrase in $SSIC_PASS
""")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Output .ssb (one input).")
@click.option("-d", "--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory for batch mode (<name>.ssb per input).")
@click.option("-q", "--quality", type=Quality(QUALITY_MIN, QUALITY_MAX), default=4.0, show_default=True,
              help="Quality, 1 (small) .. 8 (best), fractions allowed.")
@alpha_option
@group_options
@click.option("--seal", "seal_specs", multiple=True, metavar="GROUPS[:KEYFILE]",
              help="Encrypt these groups' sections (AES-256-GCM); a group name or class, comma-separated; "
              "repeat for other keys. Without :KEYFILE the key is --key-file or --passphrase-env.")
@click.option("--scramble", "scramble_specs", multiple=True, metavar="GROUPS[:KEYFILE]",
              help="Shuffle these groups' latents with a key: the file decodes, but they show as noise "
              "without the key. Same form as --seal.")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Key (raw bytes, at least 16) for --seal/--scramble groups given without their own.")
@click.option("--passphrase-env", metavar="VAR", help="Environment variable holding a passphrase to use instead of --key-file.")
@click.option("--tile", "tile_size", type=click.IntRange(0, 16384), metavar="PIXELS",
              help="Code the image in tiles of at most PIXELS a side (a multiple of 128, or 0 for one tile). "
              "Default: tiles of 1024 for images over 1.5 MP, which keeps memory under ~2 GB at any size.")
@click.option("-e", "--effort", type=click.IntRange(0, 9), default=0, show_default=True, metavar="0-9",
              help="Encoder effort: 0 is the plain encoder; levels 1-9 refine the latents for this image (4, 8, 12, "
              "16, 24, 32, 64, 128, 256 steps) for smaller files at the same quality; decoding is unchanged. "
              + EFFORT_HELP)
@click.option("--weights", type=click.Path(path_type=Path), help="Codec weights (default: the shipped ones).")
@click.option("-j", "--jobs", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Worker processes for a batch (one torch thread each).")
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("-v", "--verbose", is_flag=True, help="Say more about each file.")
def encode(inputs, output, out_dir, quality, alpha, sources, policy, seal_specs, scramble_specs, key_file,
           passphrase_env, tile_size, effort, weights, jobs, quiet, verbose):
    """Compress images into .ssb files (- for standard input / output)."""
    rep = Reporter(quiet, verbose)
    if tile_size is not None:
        from .tiles import check_tile_size
        try:
            check_tile_size(tile_size, 1)
        except SsicError as exc:
            raise click.BadParameter(str(exc), param_hint="--tile") from None
    plan = _plan_outputs(inputs, output, out_dir, ".ssb")
    protect = {"seal": _protection_keys(seal_specs, key_file, passphrase_env, "--seal"),
               "scramble": _protection_keys(scramble_specs, key_file, passphrase_env, "--scramble")}
    # What is sealed or scrambled claims every block its pixels touch and wins every shared block
    # (see mask.regions_to_group_mask), so none of its pixels is coded in the clear elsewhere.
    policy = policy.first(*(name.split("#")[0] for kind in protect.values() for name in kind))
    sources = _choose_detector(sources, policy, rep)
    work = functools.partial(_encode_one, quality=quality, grouping=(sources, policy), weights=weights, rep=rep,
                             protect=protect, tile_size=tile_size, effort=effort, detail=len(plan) == 1,
                             alpha=alpha)
    _exit_for(_run_batch(plan, work, rep, jobs), allow_missing=True)


def _protection_keys(specs: tuple[str, ...], key_file, passphrase_env, option: str) -> dict:
    """--seal person,face[:KEYFILE] … -> {group: KeyMaterial}; one key per group."""
    from .crypto import key_from_env, key_from_file
    if not specs:
        return {}
    if key_file and passphrase_env:
        raise click.UsageError("give either --key-file or --passphrase-env, not both")
    loaded: dict = {}
    out: dict = {}
    for spec in specs:
        names, sep, path = spec.partition(":")
        if sep and not path:
            raise click.UsageError(f"{option} {spec!r}: the key file after ':' is empty")
        if path:
            source = ("file", path)
        elif key_file:
            source = ("file", str(key_file))
        elif passphrase_env:
            source = ("env", passphrase_env)
        else:
            raise click.UsageError(f"{option} {names} needs a key: {option} {names}:KEYFILE, --key-file or "
                                   "--passphrase-env")
        if source not in loaded:
            loaded[source] = key_from_file(source[1]) if source[0] == "file" else key_from_env(source[1])
        for name in _split_names((names,)) or [""]:
            if not name:
                raise click.UsageError(f"{option} {spec!r}: no group named")
            if name in out and out[name] is not loaded[source]:
                raise click.UsageError(f"{option}: group {name!r} is given two different keys")
            out[name] = loaded[source]
    return out


def _encode_one(src: Path, dst: Path, quality: float, grouping: tuple, weights, rep: Reporter,
                protect: dict | None = None, tile_size: int | None = None, effort: int = 0, detail: bool = True,
                alpha: str = "refuse") -> int:
    from . import codec
    from .imageio import write_bytes_atomic
    img = _load(src, alpha, rep)
    gm = _group_mask(img.rgb, src, *grouping, log=rep.info if detail else rep.debug)
    protect = protect or {}
    data = codec.encode(img.rgb, gm, quality, channels=img.channels, weights=weights,
                        seal=protect.get("seal"), scramble=protect.get("scramble"), tile_size=tile_size,
                        effort=effort, warn=lambda msg: rep.warn(f"{src}: {msg}"),
                        progress=_effort_bar(rep, effort, detail))
    write_bytes_atomic(data, dst)
    h, w = img.rgb.shape[:2]
    rep.debug(f"{src} -> {dst}: {len(data)} bytes, {len(data) * 8 / (w * h):.4f} bpp, groups: {', '.join(gm.names)}")
    return 0


def _effort_bar(rep: Reporter, effort: int, detail: bool):
    """A progress bar for refinement (one file at a time, on a terminal): level 5 and up take
    minutes; a batch has its own bar over files instead."""
    if not (detail and effort >= 5 and not rep.quiet and sys.stderr.isatty()):
        return lambda done, total: None
    from tqdm import tqdm
    bar = tqdm(unit="step", file=sys.stderr, desc=f"effort {effort}", leave=False)

    def show(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
    return show


def _load(src, alpha: str, rep: Reporter):
    """The input image; what was done to it said on request, what the user must know always."""
    from .imageio import load_image
    img = load_image(src, alpha=alpha)
    if img.note:
        rep.debug(f"{src}: {img.note}")
    if img.warning:
        rep.warn(img.warning)
    return img


def _choose_detector(sources, policy, rep: Reporter):
    """Pick the default detector once per run (one notice, one first-use download), not per file."""
    if not sources.uses_default:
        return sources
    from .detect import choose_detector
    return choose_detector(sources, min_score=policy.min_score, block_size=policy.block_size, log=rep.info)


def _group_mask(rgb, src: Path, sources, policy, log):
    from .mask import single_group
    if sources.detector == "none" and not any((sources.mask_path, sources.boxes_path, sources.coco_path)):
        h, w = rgb.shape[:2]
        return single_group(w, h, policy.block_size)
    from .detect import build_group_mask
    return build_group_mask(rgb, sources, policy, image_name=src.name, log=lambda msg: log(f"{src}: {msg}"))


def _plan_outputs(inputs, output, out_dir, suffix: str) -> list[tuple[Path, Path]]:
    if output and out_dir:
        raise click.UsageError("use either -o/--output or -d/--out-dir, not both")
    if len(inputs) > 1 and not out_dir:
        raise click.UsageError("several inputs need -d/--out-dir")
    if len(inputs) == 1 and not (output or out_dir):
        raise click.UsageError("missing -o/--output")
    if out_dir and not out_dir.is_dir():
        raise SsicError(f"output directory {out_dir} does not exist")
    if len(inputs) > 1 and any(str(src) == "-" for src in inputs):
        raise click.UsageError("standard input (-) can only be the one input")
    if len(inputs) == 1:
        _require_inputs(inputs)         # a batch goes on past a missing file: one line for it
    if output:
        _require_output_dir(output)
    jobs = [(src, output if output else out_dir / (_stem(src) + suffix)) for src in inputs]
    claimed: dict[Path, object] = {}
    for src, dst in jobs:
        _refuse_same(src, dst)
        if dst in claimed:
            raise click.UsageError(f"{claimed[dst]} and {src} would both write {dst}; "
                                   "give inputs with different names, or run them in separate batches")
        claimed[dst] = src
    return jobs


def _require_inputs(inputs) -> None:
    """A missing input file fails the run at once, before torch loads; ``-`` and URLs are only
    found out when read."""
    from .imageio import is_stdio
    from .sources import is_url
    missing = [src for src in inputs if not (is_stdio(src) or is_url(str(src)) or Path(src).exists())]
    if missing:
        more = f" (and {len(missing) - 1} more missing inputs)" if len(missing) > 1 else ""
        raise SsicError(f"{missing[0]}: no such file{more}")


def _require_output_dir(output: Path) -> None:
    """The folder of ``-o`` must exist: said before the work, not after it (atomic.py, which
    writes the file, would only find out then)."""
    from .imageio import is_stdio
    if not is_stdio(output) and not output.parent.is_dir():
        raise SsicError(f"output directory {output.parent} does not exist")


def _stem(src) -> str:
    """The name an input gives its batch output: file stem, a URL's last segment, or stdin."""
    text = str(src)
    if text == "-":
        return "stdin"
    return Path(text.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]).stem or "output"


def _run_batch(plan, work, rep: Reporter, workers: int = 1) -> dict:
    """Run ``work(src, dst)`` (returning 0 or ``EXIT_INCOMPLETE``) for each planned file.

    One file: its error propagates as usual. A batch: a failure costs one line, not the batch;
    with ``workers`` > 1, that many processes (spawned, one torch thread each) share the files.
    Returns the counts ``failed`` and ``incomplete``."""
    if len(plan) == 1:
        return {"failed": 0, "incomplete": int(work(*plan[0]) == EXIT_INCOMPLETE)}
    from tqdm import tqdm
    counts = {"failed": 0, "incomplete": 0}
    bar = tqdm(total=len(plan), unit="img", file=sys.stderr, disable=rep.quiet or not sys.stderr.isatty())

    def account(outcome):
        error, code = outcome
        if error:
            counts["failed"] += 1
            bar.write(f"ssic: error: {error}", file=sys.stderr)
        counts["incomplete"] += code == EXIT_INCOMPLETE
        bar.update(1)

    if workers > 1:
        _run_pool(plan, work, account, workers)
    else:
        for src, dst in plan:
            account(_guarded(work, src, dst))
    bar.close()
    done = len(plan) - counts["failed"]
    rep.info(f"{done} of {len(plan)} files done" + (f", {counts['failed']} failed" if counts["failed"] else "")
             + (f", {counts['incomplete']} incomplete" if counts["incomplete"] else ""))
    return counts


def _run_pool(plan, work, account, workers: int) -> None:
    """``account`` the outcome of each planned file, run by ``workers`` spawned processes (no
    forked torch thread pools), one torch thread each."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(plan)), mp_context=context, initializer=_init_worker) as pool:
        try:
            # A process started with Ctrl-C ignored keeps it ignored: the workers, spawned by
            # submit, are deaf to it from birth, not only once _init_worker has run.
            with _handling(signal.SIGINT, signal.SIG_IGN):
                futures = {pool.submit(_in_worker, work, src, dst): src for src, dst in plan}
            for future in as_completed(futures):
                try:
                    account(future.result())
                except Exception as exc:          # noqa: BLE001 - the worker process itself died
                    account((f"{futures[future]}: internal error (worker: {exc.__class__.__name__})", 0))
        except BaseException:                     # Ctrl-C or SIGTERM: stop now, not after the queued files
            _stop(pool)
            raise


def _guarded(work, src, dst) -> tuple[str | None, int]:
    """(error message or None, exit code of the file): what crosses back from a worker. Any
    failure of one file, an internal one included, costs that file only; the message names it."""
    try:
        return None, work(src, dst) or 0
    except SsicError as exc:
        message = str(exc)
    except Exception as exc:                      # noqa: BLE001 - a batch goes on past one bad file
        message = f"internal error ({exc.__class__.__name__}: {exc})"
    return (message if message.startswith(str(src)) else f"{src}: {message}"), 0


def _init_worker() -> None:
    """A batch worker: one compute thread (the processes are the parallelism), no library chatter.
    Ctrl-C is the parent's to answer (the terminal sends it to the workers too); SIGTERM, which the
    parent sends to stop a worker, unwinds the file in progress (set last: before, the default
    action ends a worker that has written nothing)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["OMP_NUM_THREADS"] = "1"
    warnings.simplefilter("ignore")
    import torch
    torch.set_num_threads(1)
    signal.signal(signal.SIGTERM, _raise_terminated)


def _in_worker(work, src, dst) -> tuple[str | None, int]:
    """``_guarded`` in a batch worker. Terminated has removed the file in progress on its way up;
    the process then ends at once, before the pool hands it another file."""
    try:
        return _guarded(work, src, dst)
    except Terminated:
        os._exit(EXIT_TERMINATED)


def _stop(pool) -> None:
    """Cancel the files not started and stop the workers (SIGTERM: each removes the temporary file
    of the one it is writing). ``_processes`` (read before shutdown clears it): Python < 3.14 has
    no public way to stop them."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(OSError, ValueError):
            process.terminate()


@contextlib.contextmanager
def _handling(signum, handler):
    """``handler`` for ``signum`` inside the block, the previous one after it. Only the main
    thread may set handlers (and signals reach only it): elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, previous)


def _exit_for(counts: dict, allow_missing: bool) -> None:
    """A batch's exit status: 2 if any file failed, else 4 if any came out incomplete."""
    if counts["failed"]:
        raise SystemExit(EXIT_DATA)
    if counts["incomplete"] and not allow_missing:
        raise SystemExit(EXIT_INCOMPLETE)


# ----- decode ----------------------------------------------------------------------------------
@cli.command(context_settings=CONTEXT, epilog="""\b
Examples:
  ssic decode photo.ssb -o full.png
  ssic decode photo.ssb -o person.png --groups person        # others transparent
  ssic decode photo.ssb -o person.jpg --groups person --background gray
  ssic decode photo.ssb -o full.png --key-file k1.key --key-file k2.key   # opens what k1, k2 protect
  ssic decode sealed.ssb -o street.png --allow-missing      # exit 0 although sealed groups stay empty
  ssic decode https://example.org/cam.ssb -g person -o p.png -v  # fetches only header, index, person
  ssic decode *.ssb -d out/ -j 2                             # batch on 2 worker processes
  cat photo.ssb | ssic decode - -o - > photo.png             # pipes: - is stdin / stdout (PNG)
\b
Exit status 4: the image was written but a wanted group is missing from it (damaged, not
decodable here, sealed without a key, extracted away, or shown scrambled).
""")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Output image (one input; PNG keeps transparency; format from the extension; - is stdout).")
@click.option("-d", "--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output directory for batch mode (<name>.png per input).")
@click.option("-g", "--groups", multiple=True, help="Groups to decode, comma-separated or repeated (default: all).")
@click.option("--background", type=click.Choice(["transparent", "gray", "black", "white"]), default="transparent",
              show_default=True, help="What undecoded pixels become.")
@click.option("--key-file", "key_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Key for sealed or scrambled groups; repeat to try several.")
@click.option("--passphrase-env", "passphrase_envs", multiple=True, metavar="VAR",
              help="Environment variable holding a passphrase; repeat to try several.")
@click.option("--weights", type=click.Path(path_type=Path),
              help="Codec weights (default: the shipped weights the file was made with).")
@click.option("--allow-missing", is_flag=True,
              help="Exit 0 even when some wanted groups could not be decoded (default: exit 4).")
@click.option("-j", "--jobs", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Worker processes for a batch (one torch thread each).")
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("-v", "--verbose", is_flag=True, help="Say how many bytes were fetched (remote files).")
def decode(inputs, output, out_dir, groups, background, key_files, passphrase_envs, weights, allow_missing, jobs,
           quiet, verbose):
    """Decode .ssb files (paths, http(s) URLs or - for stdin), or only some of their groups."""
    from .crypto import key_from_env, key_from_file
    rep = Reporter(quiet, verbose)
    plan = _plan_outputs(inputs, output, out_dir, ".png")
    for _, dst in plan:
        _output_format(dst)             # an unknown image type fails before any file is read
    keys = [key_from_file(p) for p in key_files] + [key_from_env(v) for v in passphrase_envs]
    work = functools.partial(_decode_one, groups=_wanted_groups(groups), background=background, keys=keys,
                             weights=weights, allow_missing=allow_missing, rep=rep)
    _exit_for(_run_batch(plan, work, rep, jobs), allow_missing)


def _decode_one(input, output: Path, groups, background: str, keys, weights, allow_missing: bool,
                rep: Reporter) -> int:
    from . import container
    from .imageio import save_image
    ssb = _open_ssb(input)
    container.select_groups(ssb.header, groups)      # an unknown name fails on the header, before torch
    from . import codec
    fmt = _output_format(output)
    if fmt in ("JPEG", "BMP") and background == "transparent":
        background = "white"            # also for groups that turn out sealed, absent or damaged
        if groups or any(g.flags & container.FLAG_SEALED or not g.present for g in ssb.header.groups):
            rep.info(f"{output.suffix} has no transparency: undecoded pixels are white")
    result = codec.decode(ssb, groups, background=background, weights=weights, keys=keys, warn=rep.warn)
    _report_transfer(ssb, rep)
    if not result.decoded:
        raise SsicError("no group could be decoded; nothing written")
    save_image(result.image, output, fmt)
    missing = result.lost + result.unavailable + result.scrambled
    if missing and not allow_missing:
        rep.info(f"incomplete: {len(missing)} wanted group(s) missing from {output} ({', '.join(missing)}); "
                 "exit status 4 (--allow-missing: 0)")
        return EXIT_INCOMPLETE
    return 0


def _output_format(path: Path) -> str:
    from PIL import Image
    from .imageio import is_stdio
    if is_stdio(path):
        return "PNG"
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise click.UsageError(f"unknown output image type {path.suffix!r} (use .png, .jpg, .webp, .tif …)")
    return fmt


# ----- inspect / extract -----------------------------------------------------------------------
@cli.command(context_settings=CONTEXT, epilog="""\b
Examples:
  ssic inspect photo.ssb
  ssic inspect photo.ssb --json | jq '.groups[].name'
  ssic inspect https://example.org/cam.ssb              # reads the header only (one range request)
""")
@click.argument("input", metavar="INPUT")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def inspect(input, as_json):
    """Show the groups, bytes per group, bpp and flags of an .ssb file (a path or an http(s) URL)."""
    from . import container             # not codec: reading a header needs no torch
    ssb = _open_ssb(input)
    info = container.inspect(ssb)
    if ssb.transfer():
        info["transfer"] = ssb.transfer()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"{input}: {info['width']}x{info['height']}, {info['channels']} channel(s), block {info['block_size']}, "
               f"model {info['model_id']}/{info['weights_hash'][:8]}, quality {info['quality']:g}"
               + (f", tiles of {info['tile_size']}" if info["tile_size"] else ""))
    click.echo(f"{info['total_bytes']} bytes ({info['header_bytes']} header, format version {info['version']}), "
               f"{info['bpp']:.4f} bpp"
               + (f"; fetched {info['transfer']['fetched_bytes']} bytes to read this" if "transfer" in info else ""))
    click.echo(f"{'group':<20} {'class':<14} {'blocks':>7} {'bytes':>9}  {'bbox':<22} flags")
    for g in info["groups"]:
        bbox = ",".join(str(v) for v in g["bbox"])
        click.echo(f"{g['name']:<20} {g['label']:<14} {g['blocks']:>7} {g['bytes']:>9}  {bbox:<22} {' '.join(g['flags'])}")


@cli.command(context_settings=CONTEXT, epilog="""\b
Examples:
  ssic extract photo.ssb --groups person -o person.ssb
  ssic extract photo.ssb --groups person,car -o roi.ssb
  ssic extract https://example.org/cam.ssb -g person -o person.ssb -v   # fetches only what it keeps
""")
@click.argument("input", metavar="INPUT")
@click.option("-g", "--groups", multiple=True, required=True, help="Groups to keep, comma-separated or repeated.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output .ssb.")
@click.option("-v", "--verbose", is_flag=True, help="Say how many bytes were fetched (remote files).")
def extract(input, groups, output, verbose):
    """Write a smaller, valid .ssb holding only some groups (section bytes copied verbatim)."""
    from . import container             # not codec: copying sections needs no torch
    from .imageio import write_bytes_atomic
    _refuse_same(input, output)
    _require_output_dir(output)
    ssb = _open_ssb(input)
    data = container.extract(ssb, _wanted_groups(groups))
    _report_transfer(ssb, Reporter(verbose=verbose))
    write_bytes_atomic(data, output)


def _open_ssb(input: str):
    """A parsed .ssb (header only; sections on demand) from a path, an http(s) URL or - (stdin):
    a pipe or device is read only as far as the file's own header says it goes."""
    from . import container
    from .imageio import is_stdio
    return container.read_ssb(sys.stdin.buffer if is_stdio(input) else input)


def _report_transfer(ssb, rep: Reporter) -> None:
    t = ssb.transfer()
    if t:
        rep.debug(f"fetched {t['fetched_bytes']} of {t['file_bytes']} bytes "
                  f"({100 * t['fetched_bytes'] / max(1, t['file_bytes']):.1f} %) in {t['requests']} request(s)")


def _refuse_same(src, dst: Path) -> None:
    if str(src) == "-" or str(dst) == "-":
        return
    src = Path(src)
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise SsicError(f"{dst}: output would overwrite the input")


# ----- pre-analysis: mask / detectors -----------------------------------------------------------
@cli.command("mask", context_settings=CONTEXT, epilog="""\b
Examples:
  ssic mask photo.jpg -o overlay.png                       # what ssic encode would group
  ssic mask photo.jpg -o overlay.png --detector saliency --block-size 16
  ssic mask photo.jpg -o overlay.png --mask labels.png --names names.json --json
""")
@click.argument("input", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Overlay image: each group tinted and labelled, block grid drawn.")
@group_options
@alpha_option
@click.option("--json", "as_json", is_flag=True, help="Also print the groups (name, class, blocks) as JSON on stdout.")
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
def mask_cmd(input, output, sources, policy, alpha, as_json, quiet):
    """Show the groups an image would be split into, before encoding it."""
    from .imageio import save_image
    from .overlay import render_overlay
    rep = Reporter(quiet)
    _refuse_same(input, output)
    _require_inputs([input])
    _require_output_dir(output)
    fmt = _output_format(output)
    img = _load(input, alpha, rep)
    gm = _group_mask(img.rgb, input, _choose_detector(sources, policy, rep), policy, rep.info)
    save_image(render_overlay(img.rgb, gm), output, fmt)
    if as_json:
        click.echo(json.dumps({"block_size": gm.block_size, "groups": [
            {"name": n, "class": c, "blocks": gm.block_count(i)} for i, (n, c) in enumerate(zip(gm.names, gm.labels))]},
            indent=2))


@cli.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def detectors(as_json):
    """List the detector plugins, whether each can run here, and why not."""
    from .detect import available_detectors, default_detector_name
    infos = available_detectors()
    default, why = default_detector_name()
    if as_json:
        click.echo(json.dumps({"default": default, "reason": why, "detectors": [
            {"name": i.name, "available": i.available, "reason": i.reason, "description": i.description}
            for i in infos]}, indent=2))
        return
    for i in infos:
        mark = "yes" if i.available else "no "
        click.echo(f"{i.name:<10} {mark}  {i.description}" + ("" if i.available else f"  ({i.reason})"))
    click.echo(f"default: {default} ({why})")


# ----- train -----------------------------------------------------------------------------------
@cli.command(context_settings=CONTEXT, epilog="""\b
Examples:
  ssic train --data ~/photos --out runs/tiny                    # resumes if runs/tiny/last.pt exists
  ssic train --data ~/photos --out runs/tiny --hours 2 --eval-dir kodak/
  torchrun --nproc_per_node 4 -m ssic_cli train --data ~/photos --out runs/ddp
  ssic train --data ~/photos --out runs/base --cpu-hours 12 --decay-cpu-hours 0.3   # next stretch: 12 in all
  ssic train --out runs/tiny --export weights/                  # freeze last.pt into a weights file
""")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), help="Folder of training images (recursive).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run folder (checkpoints, log.jsonl).")
@click.option("--model", "model_id",
              help="Architecture of a new run (default: the shipped one, ssic-convhaar).")
@click.option("--crop", type=click.IntRange(128, 1024), default=128, show_default=True, help="Crop size (multiple of 128).")
@click.option("--batch", type=click.IntRange(1, 1024), default=16, show_default=True)
@click.option("--lr", type=float, default=3e-4, show_default=True)
@click.option("--warmup-steps", type=click.IntRange(1), default=300, show_default=True,
              help="Linear lr warm-up, from the step the optimiser state was created (a new run or --init); "
                   "shorten it for a short fine-tuning stretch.")
@click.option("--lr-drop", "lr_drops", type=click.IntRange(1), multiple=True,
              help="Step at which the learning rate drops 10x (repeatable), e.g. near the end of a run.")
@click.option("--max-steps", type=int, default=10**9)
@click.option("--hours", type=float, default=1e9, help="Wall-clock budget of this invocation.")
@click.option("--cpu-hours", type=click.FloatRange(min=0, min_open=True), default=1e9,
              help="CPU-time budget of the whole run, resumes included (process CPU time, all threads).")
@click.option("--decay-fraction", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Drop the learning rate 10x over this last fraction of --cpu-hours.")
@click.option("--decay-cpu-hours", type=click.FloatRange(min=0, min_open=True),
              help="Drop the learning rate 10x over the last this many CPU-hours of --cpu-hours (a campaign's "
                   "stretches: the same decay length whatever the cumulative budget).")
@click.option("--checkpoint-minutes", type=float, default=8.0, show_default=True)
@click.option("--eval-dir", type=click.Path(file_okay=False, path_type=Path), help="Images for periodic real-bitstream evaluation.")
@click.option("--eval-minutes", type=float, default=30.0, show_default=True)
@click.option("--log-every", type=click.IntRange(1), default=50, show_default=True, help="Steps between log records.")
@click.option("--init", type=click.Path(dir_okay=False, path_type=Path),
              help="Start a new run from a weights file (the shipped one: ssic_cli/weights_data/*.pt) of --model, or of an "
                   "architecture with exactly its parameters; "
                   "ignored when --out has a checkpoint.")
@click.option("--threads", type=int, default=0, help="torch threads (0: default).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="bf16: autocast the transforms; auto: time a 3x3 convolution both ways at the start and take "
                   "the faster (AVX-512 BF16 alone does not make bf16 faster: measured 1.9x slower on an Intel "
                   "Xeon, 2x faster on an AMD EPYC); the entropy model always trains in fp32.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds initial weights, crops, masks, qualities and noise (a resumed run restores its own state).")
@click.option("--rate-proxy", type=click.Choice(["noise", "rounded"]), default="noise", show_default=True,
              help="What the latents' rate is counted on: additive uniform noise (train from scratch with it), or "
                   "the rounded symbols the coder writes (straight-through; for fine-tuning a trained model).")
@click.option("--quality-balance", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Reweight the loss across qualities: 0 as is (a q 8 sample weighs ~8x a q 1 one), 1 every "
                   "quality an equal share of the gradient; each quality's own rate-distortion slope is unchanged.")
@click.option("--ema-decay", type=click.FloatRange(0, 1, max_open=True), default=0.999, show_default=True,
              help="Keep an exponential moving average of the weights (this decay per step) in the checkpoints; "
                   "0: none. It never changes the training itself.")
@click.option("--export", "export_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Instead of training: write the run's weights (tables frozen) into this folder.")
@click.option("--ema", "export_average", is_flag=True,
              help="With --export: write the weight average instead of the trunk's own weights.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(data, out, model_id, crop, batch, lr, warmup_steps, lr_drops, max_steps, hours, cpu_hours, decay_fraction, decay_cpu_hours, checkpoint_minutes,
          eval_dir, eval_minutes, log_every, init, threads, precision, seed, rate_proxy, quality_balance, ema_decay,
          export_dir, export_average, quiet):
    """Train (or resume training) the codec; one run serves every quality."""
    if export_dir:
        from .weights import export_from_checkpoint
        click.echo(export_from_checkpoint(out / "last.pt", export_dir, average=export_average))
        return
    if export_average:
        raise click.UsageError("--ema goes with --export")
    if data is None:
        raise click.UsageError("--data is required to train")
    if crop % 128:
        raise click.UsageError("--crop must be a multiple of 128")
    if decay_cpu_hours is not None:
        if decay_fraction:
            raise click.UsageError("give --decay-fraction or --decay-cpu-hours, not both")
        if cpu_hours >= 1e9:
            raise click.UsageError("--decay-cpu-hours needs --cpu-hours")
        decay_fraction = min(1.0, decay_cpu_hours / cpu_hours)
    from .model import DEFAULT_MODEL, MODEL_CONFIGS
    model_id = model_id or DEFAULT_MODEL
    if model_id not in MODEL_CONFIGS:
        raise click.UsageError(f"unknown --model {model_id!r} (known: {', '.join(sorted(MODEL_CONFIGS))})")
    from .train import TrainOptions, run
    run(TrainOptions(data=data, out=out, model_id=model_id, crop=crop, batch=batch, lr=lr, warmup_steps=warmup_steps, lr_drops=tuple(sorted(lr_drops)), max_steps=max_steps, max_hours=hours,
                     max_cpu_hours=cpu_hours, decay_fraction=decay_fraction, checkpoint_minutes=checkpoint_minutes, eval_dir=eval_dir, eval_minutes=eval_minutes,
                     log_every=log_every, init=init, threads=threads, precision=precision, seed=seed,
                     rate_proxy=rate_proxy, quality_balance=quality_balance, ema_decay=ema_decay, progress=not quiet))


def main(argv=None) -> int:
    """Run the CLI with ssic's exit codes (Click's defaults differ: usage errors are 2 there)."""
    if not os.environ.get("SSIC_DEBUG"):
        warnings.simplefilter("ignore")            # torch / compressai deprecation chatter
    # SIGTERM's default action could kill the process between a temporary file's write and its
    # rename, leaving the file behind; as an exception it unwinds through atomic.py's cleanup.
    with _handling(signal.SIGTERM, _raise_terminated):
        return _run(argv)


def _run(argv) -> int:
    """The CLI, each way out turned into ssic's exit code and at most one line."""
    try:
        cli.main(args=argv, prog_name="ssic", standalone_mode=False)
        return 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        exc.show()
        return EXIT_USAGE
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE
    except SsicError as exc:
        click.echo(f"ssic: error: {exc}", err=True)
        return EXIT_DATA
    except (click.Abort, KeyboardInterrupt):
        click.echo("ssic: interrupted", err=True)
        return EXIT_INTERRUPTED
    except Terminated:
        click.echo("ssic: terminated", err=True)
        return EXIT_TERMINATED
    except SystemExit as exc:
        if isinstance(exc.code, int):
            return exc.code
        click.echo(f"ssic: error: {exc.code}", err=True)
        return EXIT_DATA
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - a bug: one line, traceback only on request
        if os.environ.get("SSIC_DEBUG"):
            raise
        click.echo(f"ssic: internal error: {exc.__class__.__name__}: {exc} (set SSIC_DEBUG=1 for a traceback)", err=True)
        return EXIT_INTERNAL


def entry() -> None:
    sys.exit(main())
