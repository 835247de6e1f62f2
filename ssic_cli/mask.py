"""Group masks: which block of the image belongs to which group, and how that map is stored.

Pure numpy, no torch, no I/O. A ``GroupMask`` is the block grid of an image (``rows x cols``
blocks of ``block_size`` pixels, the last row/column possibly partial) with one group index per
block, plus the name and class of each group.
"""
from __future__ import annotations

import dataclasses
import math
import unicodedata
import zlib
from dataclasses import dataclass, field

import numpy as np

from .errors import FormatError, SsicError

BLOCK_SIZES = (16, 32, 64)
# 16, not the paper's 32: a group is every block its object touches, and finer blocks carry less
# background with it — the people of a COCO photo in 15.7 % fewer bits, the whole file no larger
# (README, *Region of interest on COCO*). The CLI's --block-size default repeats it.
DEFAULT_BLOCK_SIZE = 16
MAX_GROUPS = 255
BACKGROUND = "background"
# Unicode categories refused in names: controls, format characters (bidi overrides,
# zero-width), line/paragraph separators, lone surrogates.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# ',' and ':' separate names where users type them (-g a,b; --seal GROUPS:KEYFILE): a group named
# with one could never be selected. New files refuse such names; old files holding one still read.
NAME_SEPARATORS = ",:"
NAME_RULE = ("a group name is typed back in -g a,b and --seal GROUPS:KEYFILE, so it must not be empty, "
             "contain ',', ':' or control characters, or start or end with white space")


def check_group_name(name: str, what: str = "group name") -> None:
    """Refuse a name a user could not select by typing it (``NAME_RULE``). The message shows the
    name as ``repr`` does: control characters escaped, never sent raw to a terminal.

    >>> check_group_name("person#2")
    >>> check_group_name("cat,dog")
    Traceback (most recent call last):
    ssic_cli.errors.SsicError: group name 'cat,dog' cannot be used: a group name is typed back in -g a,b and --seal GROUPS:KEYFILE, so it must not be empty, contain ',', ':' or control characters, or start or end with white space
    """
    if (not name or name != name.strip() or any(c in NAME_SEPARATORS for c in name)
            or any(unicodedata.category(c) in FORBIDDEN_CATEGORIES for c in name)):
        raise SsicError(f"{what} {name!r} cannot be used: {NAME_RULE}")


@dataclass
class GroupMask:
    block_size: int
    ids: np.ndarray                      # (rows, cols) uint8, group index per block
    names: list[str]                     # unique names users type: "person", "person#2", "background"
    labels: list[str] = field(default_factory=list)   # class of each group ("" when unknown)
    # Groups the policy had to fold into another ({dropped name: name of the group holding its
    # blocks}); said to the user in one line, never silent. Not part of the file.
    merged: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self):
        self.ids = np.ascontiguousarray(self.ids, dtype=np.uint8)
        if not self.labels:
            self.labels = [n.split("#")[0] for n in self.names]
        if self.block_size not in BLOCK_SIZES:
            raise SsicError(f"block size must be one of {BLOCK_SIZES}, got {self.block_size}")
        if len(self.names) != len(set(self.names)):
            raise SsicError("group names must be unique")
        if self.ids.size and int(self.ids.max()) >= len(self.names):
            raise SsicError("group mask refers to a group that has no name")

    @property
    def num_groups(self) -> int:
        return len(self.names)

    def block_count(self, group: int) -> int:
        return int((self.ids == group).sum())

    def bbox_blocks(self, group: int) -> tuple[int, int, int, int]:
        """(row0, col0, row1, col1), half-open, of the blocks of ``group``; zeros if empty."""
        rows, cols = np.nonzero(self.ids == group)
        if rows.size == 0:
            return (0, 0, 0, 0)
        return (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)

    def pixel_ids(self, width: int, height: int) -> np.ndarray:
        """Group index of every pixel of a ``width`` x ``height`` image, (H, W) uint8."""
        b = self.block_size
        return np.repeat(np.repeat(self.ids, b, axis=0), b, axis=1)[:height, :width]

    def bbox_pixels(self, group: int, width: int, height: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) in pixels, clipped to the image."""
        r0, c0, r1, c1 = self.bbox_blocks(group)
        b = self.block_size
        return (c0 * b, r0 * b, min(c1 * b, width), min(r1 * b, height))

    def index_of(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise SsicError(f"unknown group {name!r}; this file has: {', '.join(self.names)}") from None


def grid_shape(width: int, height: int, block_size: int) -> tuple[int, int]:
    """(rows, cols) of the block grid covering a width x height image."""
    return (-(-height // block_size), -(-width // block_size))


def single_group(width: int, height: int, block_size: int = DEFAULT_BLOCK_SIZE, name: str = BACKGROUND) -> GroupMask:
    rows, cols = grid_shape(width, height, block_size)
    return GroupMask(block_size, np.zeros((rows, cols), np.uint8), [name])


def encode_block_ids(ids: np.ndarray) -> bytes:
    """Lossless, compact coding of the block map (zlib of the uint8 grid, row-major)."""
    return zlib.compress(np.ascontiguousarray(ids, np.uint8).tobytes(), 9)


def decode_block_ids(data: bytes, rows: int, cols: int, num_groups: int) -> np.ndarray:
    """Inverse of ``encode_block_ids``; checks size and group indices, never over-allocates."""
    want = rows * cols
    try:
        d = zlib.decompressobj()
        raw = d.decompress(data, want + 1)
    except zlib.error as exc:
        raise FormatError(f"block mask is corrupt ({exc})") from None
    if len(raw) != want or d.unconsumed_tail or not d.eof or d.unused_data:
        raise FormatError("block mask has the wrong size")
    ids = np.frombuffer(raw, np.uint8).reshape(rows, cols).copy()
    if want and int(ids.max()) >= num_groups:
        raise FormatError("block mask refers to a group missing from the group table")
    return ids


# --------------------------------------------------------------------------------------------
# Policy: detector regions -> GroupMask
# --------------------------------------------------------------------------------------------

OTHER = "other"
GROUP_BY = ("class", "instance")
# Each option's range and default, defined here once (the CLI's options are built from them).
COVERAGE_RANGE = (0.0, 1.0)
MIN_SCORE_RANGE = (0.0, 1.0)
DEFAULT_MIN_SCORE = 0.25
DEFAULT_MAX_GROUPS = 32
# The priority classes unless the user names others: a privacy-minded default, so a person holding
# scissors is coded (and sealed, extracted, dropped) with the person group, not the scissors'.
# docs/grouping.md states what this guarantees and measures it on COCO (research/conflict_rule.py).
DEFAULT_PRIORITY = ("person",)


def _class_names(classes) -> tuple[str, ...]:
    """Class names in the order given, without blanks or repeats: a comma-separated string or an
    iterable of names (an unordered set is sorted, so the result does not depend on hashing)."""
    if classes is None:
        return ()
    if isinstance(classes, str):
        classes = classes.split(",")
    elif isinstance(classes, (set, frozenset)):
        classes = sorted(classes)
    return tuple(dict.fromkeys(c.strip() for c in classes if c and c.strip()))


@dataclass(frozen=True)
class GroupPolicy:
    """How detector regions become groups: one value from the command line to the policy.

    ``block_size``: pixels per block side (``BLOCK_SIZES``). ``coverage``: a group claims a block
    when its regions cover *more than* this fraction of it (0 = any overlap; 1 = fully covered
    blocks only). ``group_by``: one group per ``"class"`` or per ``"instance"``. ``classes``: keep
    only these classes (``None``: all). ``min_score``: drop weaker detections. ``max_groups``: cap,
    background included. ``merge_overlaps``: measure a class's regions as their union (True) or
    each alone (False). ``priority``: classes that claim every block any of their pixels touches
    and win the blocks they share with other classes, the first listed first (default: person;
    ``()`` for none). ``classes`` and ``priority`` also take a comma-separated string.

    >>> GroupPolicy(classes="person, car").classes
    ('person', 'car')
    >>> GroupPolicy(block_size=8)
    Traceback (most recent call last):
    ...
    ssic_cli.errors.SsicError: block size must be one of (16, 32, 64), got 8
    """

    block_size: int = DEFAULT_BLOCK_SIZE
    coverage: float = 0.0
    group_by: str = "class"
    classes: tuple[str, ...] | None = None
    min_score: float = DEFAULT_MIN_SCORE
    max_groups: int = DEFAULT_MAX_GROUPS
    merge_overlaps: bool = True
    priority: tuple[str, ...] = DEFAULT_PRIORITY

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)
        put("classes", _class_names(self.classes) or None)
        put("priority", _class_names(self.priority))
        if self.block_size not in BLOCK_SIZES:
            raise SsicError(f"block size must be one of {BLOCK_SIZES}, got {self.block_size}")
        put("block_size", int(self.block_size))
        if not COVERAGE_RANGE[0] <= self.coverage <= COVERAGE_RANGE[1]:
            raise SsicError(f"coverage must be in [0, 1], got {self.coverage}")
        if self.group_by not in GROUP_BY:
            raise SsicError(f"group_by must be one of {GROUP_BY}, got {self.group_by!r}")
        if not 1 <= int(self.max_groups) <= MAX_GROUPS:
            raise SsicError(f"max_groups must be in 1..{MAX_GROUPS}, got {self.max_groups}")
        put("max_groups", int(self.max_groups))

    def replace(self, **changes) -> "GroupPolicy":
        """A copy with some options changed (checked like a new one)."""
        return dataclasses.replace(self, **changes)

    def first(self, *classes) -> "GroupPolicy":
        """A copy where ``classes`` (names or comma-separated strings) come first in ``priority``."""
        return self.replace(priority=_class_names([*(c for v in classes for c in _class_names(v)),
                                                   *self.priority]))


def block_pixel_counts(width: int, height: int, block_size: int) -> np.ndarray:
    """(rows, cols) int64: how many image pixels each block holds (edge blocks may be partial)."""
    rows, cols = grid_shape(width, height, block_size)
    heights = np.minimum(block_size, height - block_size * np.arange(rows))
    widths = np.minimum(block_size, width - block_size * np.arange(cols))
    return np.outer(heights, widths).astype(np.int64)


def mask_block_counts(mask: np.ndarray, block_size: int) -> np.ndarray:
    """(rows, cols) int64: how many pixels of the boolean H x W ``mask`` fall in each block."""
    h, w = mask.shape
    row_starts = np.arange(0, h, block_size)
    col_starts = np.arange(0, w, block_size)
    m = np.ascontiguousarray(mask, dtype=bool).view(np.uint8)
    per_row = np.add.reduceat(m, row_starts, axis=0, dtype=np.int64)       # (rows, W)
    return np.add.reduceat(per_row, col_starts, axis=1, dtype=np.int64)   # (rows, cols)


def box_block_counts(box, width: int, height: int, block_size: int) -> np.ndarray:
    """(rows, cols) int64: pixels of the half-open box (x0, y0, x1, y1) in each block, exactly."""
    rows, cols = grid_shape(width, height, block_size)
    x0, y0, x1, y1 = clip_box(box, width, height)
    edges_y = np.minimum(block_size * np.arange(rows + 1), height)
    edges_x = np.minimum(block_size * np.arange(cols + 1), width)
    span_y = np.clip(np.minimum(edges_y[1:], y1) - np.maximum(edges_y[:-1], y0), 0, None)
    span_x = np.clip(np.minimum(edges_x[1:], x1) - np.maximum(edges_x[:-1], x0), 0, None)
    return np.outer(span_y, span_x).astype(np.int64)


def clip_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer half-open box (holding a float one) clipped to the image; empty when x1 <= x0 or y1 <= y0."""
    try:                                            # float boxes grow to whole pixels
        x0, y0 = (math.floor(v) for v in box[:2])
        x1, y1 = (math.ceil(v) for v in box[2:4])
    except (TypeError, ValueError, OverflowError):
        raise SsicError(f"a box must be 4 finite numbers (x0, y0, x1, y1), got {box!r}") from None
    return (max(0, min(x0, width)), max(0, min(y0, height)),
            max(0, min(x1, width)), max(0, min(y1, height)))


def region_pixels(region, width: int, height: int) -> np.ndarray:
    """Boolean H x W footprint of a region: its mask if it has one, else its box."""
    if region.mask is not None:
        return np.asarray(region.mask, dtype=bool)
    x0, y0, x1, y1 = clip_box(region.box, width, height)
    out = np.zeros((height, width), bool)
    out[y0:y1, x0:x1] = True
    return out


def _region_block_counts(region, width: int, height: int, block_size: int) -> np.ndarray:
    if region.mask is not None:
        return mask_block_counts(region.mask, block_size)
    return box_block_counts(region.box, width, height, block_size)


def _check_region(region, width: int, height: int) -> bool:
    """Validate one region; False when it covers no pixel (it is then ignored)."""
    if region.mask is not None:
        shape = np.shape(region.mask)
        if shape != (height, width):
            raise SsicError(f"region {region.label!r} has a {shape[1] if len(shape) > 1 else '?'}x"
                            f"{shape[0] if shape else '?'} mask; the image is {width}x{height}")
        return bool(np.any(region.mask))
    x0, y0, x1, y1 = clip_box(region.box, width, height)
    return x1 > x0 and y1 > y0


def _instance_order(regions: list) -> list:
    """Deterministic instance numbering within one class: given numbers first, then by score
    (highest first), then top-to-bottom, left-to-right."""
    return sorted(regions, key=lambda r: (r.instance <= 0, r.instance, -float(r.score),
                                          tuple(int(v) for v in r.box)))


def _group_regions(regions: list, group_by: str) -> list[tuple[str, str, list]]:
    """[(name, label, regions)] in a stable order: by class name, then instance number."""
    by_label: dict[str, list] = {}
    for r in regions:
        by_label.setdefault(r.label, []).append(r)
    groups = []
    for label in sorted(by_label):
        members = _instance_order(by_label[label])
        if group_by == "class":
            groups.append((label, label, members))
        else:
            for k, r in enumerate(members, start=1):
                groups.append((label if k == 1 else f"{label}#{k}", label, [r]))
    return groups


def _group_coverage(members: list, width: int, height: int, block_size: int,
                    block_pixels: np.ndarray, merge_overlaps: bool) -> tuple[np.ndarray, int]:
    """(coverage fraction per block, total pixel area) of one group's regions."""
    if len(members) == 1:
        counts = _region_block_counts(members[0], width, height, block_size)
    elif merge_overlaps:     # union of the footprints: overlapping pixels count once
        union = np.zeros((height, width), bool)
        for r in members:
            union |= region_pixels(r, width, height)
        counts = mask_block_counts(union, block_size)
    else:                    # each region on its own; a block takes its best-covering region
        counts = np.max([_region_block_counts(r, width, height, block_size) for r in members], axis=0)
    return counts / block_pixels, int(counts.sum())


def regions_to_group_mask(regions, width: int, height: int, policy: GroupPolicy | None = None,
                          **options) -> GroupMask:
    """Turn detector regions into a block-level ``GroupMask`` (the policy; pure numpy).

    ``policy`` (default ``GroupPolicy()``) holds the options; keyword ``options`` change some
    of them (``regions_to_group_mask(regions, w, h, block_size=32)``). The image of ``width``
    x ``height`` pixels is cut into ``rows x cols`` blocks of ``block_size`` (see ``grid_shape``;
    the last row/column may be partial).

    1. **Filter.** Regions scoring below ``min_score``, whose label is not in ``classes``
       (``None`` keeps all), labelled ``background``, or covering no pixel are dropped.
    2. **Group.** ``group_by="class"``: one group per class, named after it (``person``);
       all instances of a class, overlapping or not, share it (paper Fig. 4a/4b).
       ``group_by="instance"``: one group per instance, kept apart even where instances
       overlap (Fig. 4c), named ``person``, ``person#2``, … Instances are numbered by their
       ``Region.instance`` when set, else by descending score, then top-left position.
    3. **Coverage.** A group claims a block when its regions cover *more than* ``coverage``
       (a fraction in [0, 1]; 1.0 means fully covered blocks only) of the block's image
       pixels (partial edge blocks count their in-image pixels). The default 0.0 means any
       overlap. Regions use their pixel mask when they have one, else their box.
       ``merge_overlaps`` says how one group's regions combine: True (default) measures the
       union of their footprints (overlaps merged, counted once); False measures each region
       alone and takes the best. It only matters when a group holds several regions (class
       grouping) and ``coverage`` > 0.
    4. **Priority classes.** Groups whose class is in ``priority`` (default ``person``; the CLI
       adds what a user seals, scrambles or names with ``--classes``) claim *every* block that
       any of their pixels touches, whatever ``coverage`` says, and win every block they share
       with a group of another class; between priority classes the one listed first wins. So
       every block holding a pixel of the first priority class belongs to a group of that class.
    5. **Conflicts.** Otherwise (groups of one priority class, or no priority class) a block
       claimed by several groups goes to the one covering the largest fraction of it; ties go to
       the group with the smaller total area (so small objects are not swallowed by large ones),
       then to the earlier name in sorted order. Deterministic. A group left with no block of
       its own is folded into the group holding most of the blocks it claimed, and
       ``GroupMask.merged`` records it (``{"person#2": "person"}``) so the caller can say so: no
       region disappears silently.
    6. **Background.** Blocks no group claims form ``background``, always group 0 when
       present; with no regions the mask is the single group ``background``.
    7. **Cap.** At most ``max_groups`` groups (background included, 1..255). Beyond that the
       groups with the most blocks are kept (ties: name order) and the rest are merged into
       one group named ``other`` (label ``other``) so they stay separable from background.
       ``max_groups=1`` gives the single group ``background``.

    Groups are ordered: ``background``, then by class name and instance number (``other``
    last). Returns ``GroupMask(block_size, ids, names, labels)``.

    >>> from ssic_cli.detect.base import Region
    >>> scissors = Region("scissors", (0, 0, 32, 16))       # two blocks of 16
    >>> person = Region("person", (24, 0, 48, 16))          # touches the scissors' second block
    >>> regions_to_group_mask([scissors, person], 48, 16).ids.tolist()
    [[1, 0, 0]]
    >>> regions_to_group_mask([scissors, person], 48, 16, priority=()).ids.tolist()
    [[1, 1, 0]]
    """
    policy = (policy or GroupPolicy()).replace(**options)
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise SsicError(f"image size must be positive, got {width}x{height}")
    block_size, coverage, max_groups = policy.block_size, policy.coverage, policy.max_groups
    wanted = set(policy.classes) if policy.classes else None
    rank = {label: k for k, label in enumerate(policy.priority)}     # 0 = first

    kept = [r for r in regions
            if float(r.score) >= policy.min_score
            and r.label != BACKGROUND
            and (wanted is None or r.label in wanted)
            and _check_region(r, width, height)]
    for r in kept:                      # said now, not after the image is coded
        check_group_name(r.label)

    rows, cols = grid_shape(width, height, block_size)
    block_pixels = block_pixel_counts(width, height, block_size)
    groups = _group_regions(kept, policy.group_by)
    if not groups:
        return single_group(width, height, block_size)

    covs, areas = zip(*(_group_coverage(m, width, height, block_size, block_pixels, policy.merge_overlaps)
                        for _, _, m in groups))
    cov = np.stack(covs)                                               # (G, rows, cols)
    claimed = (cov >= 1.0) if coverage >= 1.0 else (cov > coverage) & (cov > 0)
    first = np.array([label in rank for _, label, _ in groups])
    claimed[first] = cov[first] > 0                                   # every touched block
    # Conflict order: priority classes above all others and in their order (a bonus of 2 per
    # rank beats any coverage), then the largest coverage; ties: smaller area first, then name
    # order (argmax keeps the first).
    bonus = np.array([2.0 * (len(rank) - rank[label]) if label in rank else 0.0 for _, label, _ in groups])
    order = sorted(range(len(groups)), key=lambda g: (areas[g], groups[g][0]))
    score = np.where(claimed, cov + bonus[:, None, None], -1.0)
    winner = np.asarray(order)[np.argmax(score[order], axis=0)]        # group index per block

    # Blocks per group, then fold empty groups into their blocks' owners and apply the cap.
    owner = np.where(claimed.any(axis=0), winner, -1)                 # -1 = background
    counts = [int((owner == g).sum()) for g in range(len(groups))]
    alive = [g for g in range(len(groups)) if counts[g] > 0]
    folded = {g: int(np.bincount(owner[claimed[g]]).argmax()) for g in range(len(groups))
              if counts[g] == 0 and claimed[g].any()}
    has_background = bool((owner < 0).any())
    if max_groups == 1:
        return single_group(width, height, block_size)
    budget = max_groups - int(has_background)          # >= 1 slots for object groups
    extra: list[int] = []
    if len(alive) > budget:                            # keep the biggest, one slot for "other"
        by_size = sorted(alive, key=lambda g: (-counts[g], groups[g][0]))
        alive, extra = sorted(by_size[:budget - 1]), by_size[budget - 1:]

    names: list[str] = []
    labels: list[str] = []
    ids = np.zeros((rows, cols), np.uint8)
    if has_background:
        names.append(BACKGROUND)
        labels.append(BACKGROUND)
    for g in alive:
        ids[owner == g] = len(names)
        names.append(groups[g][0])
        labels.append(groups[g][1])
    if extra:
        if OTHER not in names:
            names.append(OTHER)
            labels.append(OTHER)
        target = names.index(OTHER)
        for g in extra:
            ids[owner == g] = target
    merged = {groups[g][0]: (groups[into][0] if into in alive else OTHER) for g, into in folded.items()}
    merged.update({groups[g][0]: OTHER for g in extra})
    return GroupMask(block_size, ids, names, labels, merged)
