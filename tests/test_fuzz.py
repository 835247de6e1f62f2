"""Damaged and forged .ssb files: every case ends in an SsicError or a decode, never a crash.

The mutation engine is ``bench.fuzz`` (which runs ≥ 10 000 cases for ``make fuzz``); here
hypothesis drives it with seeds, so a failing case is reproducible from its seed.
"""
from __future__ import annotations

import random
import signal
import tracemalloc
import zlib
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import fuzz
from ssic_cli import codec, container
from ssic_cli.errors import FormatError, SsicError

from .conftest import require_crypto

CASE_SECONDS = 60          # a hang fails the test instead of stalling the suite
# Seeds, not st.randoms(): conftest flushes denormals, and hypothesis then refuses to draw floats.
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one torch thread (see conftest.one_thread)."""


@pytest.fixture(scope="module")
def corpus():
    require_crypto()                          # the corpus holds sealed and scrambled files
    from ssic_cli import crypto
    saved = crypto.DEFAULT_KDF
    try:
        return fuzz.build_corpus()
    finally:
        crypto.DEFAULT_KDF = saved


@pytest.fixture(scope="module")
def reference(corpus):
    """Each corpus file decoded with its keys: (image array, block mask)."""
    out = {}
    for name, data in corpus.items():
        ssb = container.read_ssb(data)
        keys = [fuzz.crypto_key(k) for k in (fuzz.KEY1, fuzz.KEY2)]
        out[name] = _color(np.asarray(codec.decode(ssb, keys=keys).image), ssb.header.channels), ssb.header
    return out


@contextmanager
def time_limit(seconds: int):
    def stop(signum, frame):
        raise TimeoutError(f"case took over {seconds} s")
    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_corpus_decodes(corpus):
    for data in corpus.values():
        for keys in (False, True):
            assert fuzz.run_case(data, keys) == "ok"


@FUZZ
@given(seed=SEEDS)
def test_read_ssb_never_crashes(corpus, seed):
    rng = random.Random(seed)
    name, kind, what, data = fuzz.mutate(rng, corpus)
    try:
        with time_limit(CASE_SECONDS):
            ssb = container.read_ssb(data)
            for i, g in enumerate(ssb.header.groups):
                if g.present:
                    try:
                        ssb.section(i)
                    except FormatError:
                        pass
            container.describe(ssb)
    except SsicError:
        pass


@settings(FUZZ, max_examples=150)
@given(seed=SEEDS, with_keys=st.booleans())
def test_decode_never_crashes(corpus, seed, with_keys):
    rng = random.Random(seed)
    name, kind, what, data = fuzz.mutate(rng, corpus)
    with time_limit(CASE_SECONDS):
        outcome = fuzz.run_case(data, with_keys)
    assert not outcome.startswith("crash"), (name, what, outcome)


@pytest.mark.slow
@settings(FUZZ, max_examples=100)
@given(seed=SEEDS, with_keys=st.booleans())
def test_garbage_section_loses_that_group_only(corpus, reference, seed, with_keys):
    """Section bytes damaged with the CRC-32 recomputed reach the rANS decoder (and the AES-GCM
    check): the group decodes to garbage or is reported lost; every other group is untouched."""
    rng = random.Random(seed)
    name = rng.choice(sorted(corpus))
    data, what = fuzz.m_section_garbage(rng, corpus[name], corpus)
    damaged = int(what.split()[1])
    keys = [fuzz.crypto_key(k) for k in (fuzz.KEY1, fuzz.KEY2)] if with_keys else None
    with time_limit(CASE_SECONDS):
        res = codec.decode(data, keys=keys)
    full, header = reference[name]
    got = _color(np.asarray(res.image), header.channels)
    b = header.block_size
    pix = np.kron(header.block_ids, np.ones((b, b), np.uint8))[:header.height, :header.width]
    for g, entry in enumerate(header.groups):
        if g != damaged and entry.name in res.decoded and entry.name not in res.scrambled:
            assert np.array_equal(got[pix == g], full[pix == g]), (name, what, entry.name)
    changed = fuzz.Raw(data).sections[damaged] != fuzz.Raw(corpus[name]).sections[damaged]
    if header.groups[damaged].flags & container.FLAG_SEALED and with_keys and changed:
        assert header.groups[damaged].name in res.lost, what     # AES-GCM notices any change


def _color(img: np.ndarray, channels: int) -> np.ndarray:
    """Without alpha: (H, W, 3) for colour, (H, W) for grayscale."""
    if channels == 1:
        return img if img.ndim == 2 else img[..., 0]
    return img[..., :3]


def test_forged_huge_image_is_refused_before_allocation(corpus):
    raw = fuzz.Raw(corpus["plain"])
    raw.set("width", 60000)
    raw.set("height", 60000)
    forged = raw.dump()
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="60000×60000, over the limit of 200000000 pixels"):
            container.read_ssb(forged)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
    # Under the limit but inconsistent with the 3×4 block mask: refused, nothing decoded.
    raw.set("width", 14000)
    raw.set("height", 14000)
    with pytest.raises(FormatError, match="block mask"):
        container.read_ssb(raw.dump())
    # The reader's limit is a parameter.
    with pytest.raises(FormatError, match="over the limit of 1000 pixels"):
        container.read_ssb(corpus["plain"], max_pixels=1000)


def test_mask_zip_bomb_is_refused(corpus):
    raw = fuzz.Raw(corpus["plain"])
    raw.set_blob("mask", zlib.compress(bytes(1 << 24), 9))
    with pytest.raises(FormatError, match="block mask is"):
        container.read_ssb(raw.dump())


@pytest.mark.parametrize("seed", range(3))
def test_fixed_seeds_match_the_bench(corpus, seed):
    """The bench's first cases, as a cheap regression net that needs no hypothesis."""
    rng = random.Random(seed)
    for _ in range(15):
        _, _, what, data = fuzz.mutate(rng, corpus)
        with time_limit(CASE_SECONDS):
            assert not fuzz.run_case(data, rng.random() < 0.5).startswith("crash"), what


# ----- format-aware forgeries (issue 41) ----------------------------------------------------------
FORMAT_AWARE = ["forge_mask_meaning", "forge_geometry", "forge_text", "forge_kdf", "forge_index_claims",
                "forge_many_groups"]


@pytest.mark.slow
@settings(FUZZ, max_examples=60)
@given(seed=SEEDS, kind=st.sampled_from(FORMAT_AWARE), with_keys=st.booleans())
def test_format_aware_forgeries_never_crash(corpus, seed, kind, with_keys):
    """Forgeries that keep the CRCs right, so the checks past them (pixel budget, mask meaning,
    text rules, KDF settings and budget, weights lookup) are what they reach."""
    rng = random.Random(seed)
    name = rng.choice(sorted(corpus))
    data, what = fuzz.MUTATIONS[kind](rng, corpus[name], corpus)
    from ssic_cli import crypto
    with time_limit(CASE_SECONDS), pytest.MonkeyPatch.context() as mp:
        # 2 derivations at the highest cost instead of 8: the budget's mechanism, not its size
        # (tests/test_forgeries.py spends the real one), so the suite stays fast.
        mp.setattr(crypto, "KDF_BUDGET", 2 * crypto.KdfParams(16, 8, 2, b"").work)
        outcome = fuzz.run_case(data, with_keys)
    assert not outcome.startswith("crash"), (name, what, outcome)


def test_field_sweep_reaches_past_the_header_crc(corpus):
    """Every header field of every corpus file, forged in turn with the header CRC fixed: the
    reader refuses or accepts each in one line, never crashes, and no refusal is the CRC's (but
    where a forged length, count, flag or version moves where the reader looks for it)."""
    layout = ("_len ", "group_count ", "file_flags ", "version ")
    for name in sorted(corpus):
        for what, data in fuzz.field_sweep(corpus[name]):
            try:
                container.read_ssb(data)
            except SsicError as exc:
                assert "\n" not in str(exc), (name, what, str(exc))
                assert "checksum" not in str(exc) or any(f in what for f in layout), (name, what, str(exc))


def test_field_sweep_decodes_never_crash(corpus):
    """The sweep of one file, decoded whole (with the keys on every other case)."""
    for i, (what, data) in enumerate(fuzz.field_sweep(corpus["protected"])):
        with time_limit(CASE_SECONDS):
            outcome = fuzz.run_case(data, i % 2 == 1)
        assert not outcome.startswith("crash"), (what, outcome)
