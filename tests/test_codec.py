"""End-to-end behaviour of the codec API: round trips and exact group independence."""
from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from ssic_cli import codec, container
from ssic_cli.errors import SsicError, WeightsMismatchError, WeightsMissingError
from ssic_cli.evaluate import psnr
from ssic_cli.mask import GroupMask, single_group
from ssic_cli.model import MODEL_CONFIGS, build_model
from ssic_cli.weights import freeze

from .conftest import ROOT, block_pixels, crop, three_groups


def test_round_trip_size_mode_and_quality(kodak, loaded):
    img = crop(kodak, 192, 256, 100, 200)
    outs = {}
    for q in (1.0, 4.0, 8.0):
        data = codec.encode(img, single_group(256, 192), q)
        res = codec.decode(data)
        assert res.image.size == (256, 192) and res.image.mode == "RGB"
        outs[q] = (len(data), psnr(img, np.asarray(res.image)))
    sizes = [outs[q][0] for q in (1.0, 4.0, 8.0)]
    quals = [outs[q][1] for q in (1.0, 4.0, 8.0)]
    assert sizes == sorted(sizes) and quals == sorted(quals), outs
    # The card's Kodak figure at q=8, with margin for one crop vs. the set mean.
    card_psnr = {row["quality"]: row["psnr"] for row in loaded.card.get("kodak", [])}
    assert quals[-1] > card_psnr.get(8.0, 20.0) - 4.0


def test_fractional_quality_lies_between(kodak):
    img = crop(kodak, 128, 128, 200, 300)
    n = [len(codec.encode(img, single_group(128, 128), q)) for q in (3.0, 3.5, 4.0)]
    assert n[0] <= n[1] <= n[2]


@pytest.mark.parametrize("block", [16, pytest.param(32, marks=pytest.mark.slow), pytest.param(64, marks=pytest.mark.slow)])
def test_group_alone_equals_group_in_full_decode(kodak, block):
    h, w = 200, 300
    img = crop(kodak, h, w, 150, 250)
    gm = three_groups(w, h, block)
    data = codec.encode(img, gm, 4.0)
    full = np.asarray(codec.decode(data).image)
    pix = block_pixels(gm, w, h)
    for g, name in enumerate(gm.names):
        part = np.asarray(codec.decode(data, [name]).image)
        assert part.shape == (h, w, 4)
        sel = pix == g
        assert (part[..., 3][sel] == 255).all() and (part[..., 3][~sel] == 0).all()
        assert np.array_equal(part[..., :3][sel], full[sel]), name


def test_other_groups_pixels_do_not_touch_a_group(kodak):
    h, w = 192, 320
    img = crop(kodak, h, w, 40, 100)
    gm = three_groups(w, h)
    pix = block_pixels(gm, w, h)
    other = img.copy()
    other[pix != 1] = 255 - other[pix != 1]                 # change everything but "person"
    a = container.read_ssb(codec.encode(img, gm, 5.0))
    b = container.read_ssb(codec.encode(other, gm, 5.0))
    assert a.section(1) == b.section(1)
    assert a.section(0) != b.section(0)
    pa = np.asarray(codec.decode(a, ["person"]).image)
    pb = np.asarray(codec.decode(b, ["person"]).image)
    assert np.array_equal(pa, pb)


def test_extract_decodes_like_the_subset(kodak):
    h, w = 160, 224
    img = crop(kodak, h, w, 300, 400)
    gm = three_groups(w, h)
    data = codec.encode(img, gm, 3.0)
    small = container.extract(data, ["person", "car"])
    assert len(small) < len(data)
    info = container.inspect(small)
    assert [g["flags"][0] for g in info["groups"]] == ["absent", "present", "present"]
    a = np.asarray(codec.decode(small, ["person", "car"]).image)
    b = np.asarray(codec.decode(data, ["person", "car"]).image)
    assert np.array_equal(a, b)
    res = codec.decode(small)              # all it carries: the absent one is not wanted, not missing
    assert res.absent == ["background"] and not res.unavailable and res.complete and res.image.mode == "RGBA"
    named = codec.decode(small, ["background", "person"])      # named: reported missing
    assert named.unavailable == ["background"] and not named.complete
    with pytest.raises(SsicError, match="at least one group"):
        container.extract(data, [])                              # nothing named is not "everything"


def test_corrupted_section_loses_only_its_group(kodak):
    h, w = 160, 224
    img = crop(kodak, h, w)
    gm = three_groups(w, h)
    raw = bytearray(codec.encode(img, gm, 4.0))
    ssb = container.read_ssb(bytes(raw))
    off, length, _ = ssb.index[1]
    raw[ssb.header_size + off + length // 2] ^= 0x5A
    warnings = []
    res = codec.decode(bytes(raw), warn=warnings.append)
    assert res.lost == ["person"] and set(res.decoded) == {"background", "car"}
    assert any("person" in w for w in warnings)
    good = np.asarray(codec.decode(codec.encode(img, gm, 4.0), ["background", "car"]).image)
    assert np.array_equal(np.asarray(res.image), good)


def test_unknown_group_is_a_clear_error(kodak):
    data = codec.encode(crop(kodak, 64, 64), single_group(64, 64), 4.0)
    with pytest.raises(SsicError, match="unknown group 'cat'"):
        codec.decode(data, ["cat"])


def test_mismatched_weights_refuse_to_decode(kodak, loaded):
    from dataclasses import replace
    data = codec.encode(crop(kodak, 64, 64), single_group(64, 64), 4.0)
    other = replace(loaded, weights_hash=bytes(16))
    with pytest.raises(WeightsMismatchError, match="weights"):
        codec.decode(data, weights=other)


def test_a_file_naming_weights_this_install_lacks_is_refused_naming_them(kodak):
    from dataclasses import replace
    ssb = container.read_ssb(codec.encode(crop(kodak, 64, 64), single_group(64, 64), 4.0))
    forged = container.dump_ssb(replace(ssb.header, weights_hash=bytes(range(16))),
                                [ssb.section(i) for i in range(len(ssb.header.groups))])
    with pytest.raises(WeightsMismatchError, match=r"made with weights ssic-[a-z0-9]+-00010203, which this install lacks "
                       r"\(they are not weights ssic released.*; pass them with --weights") as err:
        codec.decode(forged)
    assert "\n" not in str(err.value)


def test_decoding_finds_the_files_own_weights_unless_the_user_chose(loaded, monkeypatch):
    from ssic_cli.weights import WEIGHTS_ENV, weights_for_file
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    assert weights_for_file(loaded.model_id, loaded.weights_hash) == loaded.path
    with pytest.raises(WeightsMissingError, match="which this install lacks"):   # not released: refused, naming them
        weights_for_file(loaded.model_id, bytes(16))
    assert weights_for_file(loaded.model_id, loaded.weights_hash, "mine.pt") == "mine.pt"
    monkeypatch.setenv(WEIGHTS_ENV, "mine.pt")
    assert weights_for_file(loaded.model_id, loaded.weights_hash) is None  # load_weights reads $SSIC_WEIGHTS


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (33, 17), (130, 257)])
def test_odd_sizes(kodak, size):
    h, w = size
    img = crop(kodak, h, w, 10, 10)
    res = codec.decode(codec.encode(img, single_group(w, h, 16), 6.0))
    assert res.image.size == (w, h)


def test_grayscale_source_decodes_to_grayscale(kodak):
    gray = np.repeat(kodak[:64, :96].mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    res = codec.decode(codec.encode(gray, single_group(96, 64), 5.0, channels=1))
    assert res.image.mode == "L" and res.image.size == (96, 64)


def test_encode_is_deterministic(kodak):
    img = crop(kodak, 96, 160)
    gm = three_groups(160, 96, 16)
    a, b = container.read_ssb(codec.encode(img, gm, 4.0)), container.read_ssb(codec.encode(img, gm, 4.0))
    assert a.header.file_id != b.header.file_id               # random per encode (binds sealed sections)
    a.header.file_id = b.header.file_id
    assert a.header == b.header
    assert [a.section(g) for g in range(3)] == [b.section(g) for g in range(3)]


_THREAD_SCRIPT = """
import hashlib, sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from ssic_cli import codec
print(hashlib.sha256(np.asarray(codec.decode(open(sys.argv[2], 'rb').read()).image).tobytes()).hexdigest())
"""


@pytest.mark.slow
def test_decode_same_with_one_or_two_threads(kodak, tmp_path):
    h, w = 200, 300
    path = tmp_path / "t.ssb"
    path.write_bytes(codec.encode(crop(kodak, h, w, 64, 64), three_groups(w, h), 4.0))
    digests = {n: subprocess.run([sys.executable, "-c", _THREAD_SCRIPT, str(n), str(path)], cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout.strip() for n in (1, 2)}
    ours = hashlib.sha256(np.asarray(codec.decode(path.read_bytes()).image).tobytes()).hexdigest()
    assert digests[1] == digests[2] == ours


@pytest.mark.parametrize("model_id", sorted(set(MODEL_CONFIGS) - {"ssic-tiny2p"}))
def test_every_architecture_keeps_groups_exactly_independent(kodak, model_id, one_thread):
    """The transform candidates (random weights): a group decodes to the same pixels alone and in
    a full decode, and its section does not change when the other groups' pixels do."""
    torch.manual_seed(0)
    lm = freeze(build_model(model_id).eval(), model_id, tag=model_id.encode())
    h, w = 160, 288
    img = crop(kodak, h, w, 60, 120)
    gm = three_groups(w, h)
    pix = block_pixels(gm, w, h)
    other = img.copy()
    other[pix != 1] = 255 - other[pix != 1]
    data = codec.encode(img, gm, 4.0, weights=lm)
    assert container.read_ssb(data).section(1) == container.read_ssb(codec.encode(other, gm, 4.0, weights=lm)).section(1)
    full = np.asarray(codec.decode(data, weights=lm).image)
    for g, name in enumerate(gm.names):
        part = np.asarray(codec.decode(data, [name], weights=lm).image)
        assert np.array_equal(part[..., :3][pix == g], full[pix == g]), name


def test_a_present_group_without_blocks_is_lost_alone(kodak, one_thread):
    """A forged mask that gives a present group no blocks (or moves them all to another group)
    loses the groups it breaks, each with one line; the intact ones still decode."""
    img = crop(kodak, 128, 192)
    gm = three_groups(192, 128)
    ssb = container.read_ssb(codec.encode(img, gm, 3.0))
    hdr = ssb.header
    forged_ids = hdr.block_ids.copy()
    forged_ids[forged_ids == 2] = 0                    # car's blocks now claimed by background
    forged_mask = GroupMask(gm.block_size, forged_ids, gm.names, gm.labels)
    forged_hdr = container.header_from_mask(192, 128, 3, forged_mask, hdr.model_id, hdr.weights_hash, hdr.quality)
    forged = container.dump_ssb(forged_hdr, [ssb.section(g) for g in range(3)])
    notes = []
    result = codec.decode(forged, warn=notes.append)
    assert result.decoded == ["person"] and sorted(result.lost) == ["background", "car"]
    assert any("car" in n and "no blocks" in n for n in notes)
    alone = np.asarray(codec.decode(codec.encode(img, gm, 3.0), ["person"]).image)
    assert np.array_equal(np.asarray(result.image)[..., :3][alone[..., 3] > 0], alone[..., :3][alone[..., 3] > 0])


def test_a_thin_image_counts_its_padded_canvas(monkeypatch):
    """1,000,000 × 1 pixels is 1 MP, but the decoder would hold 1,000,064 × 128 of canvas."""
    monkeypatch.delenv("SSIC_MAX_PIXELS", raising=False)
    codec.check_pixel_budget(10_000, 1, None, 1024)
    with pytest.raises(SsicError, match=r"padded to 1000064×128 = 128.0 MP, over the limit of 100 MP"):
        codec.check_pixel_budget(1_000_000, 1, None, 1024)


@pytest.mark.parametrize("model_id", ["../../etc/passwd", "/tmp/x", "a/b"])
def test_a_model_id_is_never_joined_into_a_path(model_id, monkeypatch):
    monkeypatch.delenv("SSIC_WEIGHTS", raising=False)
    gm = single_group(64, 48)
    data = container.dump_ssb(container.header_from_mask(64, 48, 3, gm, model_id, bytes(16), 4.0), [b"\0" * 8])
    with pytest.raises(WeightsMissingError, match="not a name ssic gives weights"):
        codec.decode(data)


def test_a_group_in_far_apart_parts_decodes_each_part_on_its_own_crop(kodak, one_thread, monkeypatch):
    """Two blocks in opposite corners: the pixel path runs on two small crops, not the canvas,
    and the pixels are the ones the whole group's crop gives."""
    img = crop(kodak, 256, 384)
    ids = np.zeros((16, 24), np.uint8)
    ids[0, 0] = ids[15, 23] = 1
    data = codec.encode(img, GroupMask(16, ids, ["background", "dots"]), 4.0)
    shapes = []
    from ssic_cli.model.ssic import SSICModel
    reconstruct = SSICModel.reconstruct

    def spy(self, q64, keys, block_size, gains):
        shapes.append(tuple(keys.shape[1:]))
        return reconstruct(self, q64, keys, block_size, gains)

    monkeypatch.setattr(SSICModel, "reconstruct", spy)
    parts = np.asarray(codec.decode(data, ["dots"]).image)
    assert shapes == [(2, 2), (2, 2)]                            # two 32-pixel crops of 16-pixel blocks
    monkeypatch.setattr(codec, "_parts", lambda keys, b, align: [(keys, (0, 0, keys.shape[1] * b, keys.shape[2] * b))])
    whole = np.asarray(codec.decode(data, ["dots"]).image)
    assert shapes[-1] == (16, 24) and np.array_equal(parts, whole)
