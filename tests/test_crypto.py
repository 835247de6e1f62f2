"""Sealing and scrambling: keys, params, binding, layered keys, exact restore, no leakage."""
from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from ssic_cli import codec, container, crypto
from ssic_cli.cli import main
from ssic_cli.errors import FormatError, SsicError
from ssic_cli.mask import single_group

from .conftest import block_pixels, crop, needs_crypto, three_groups

W, H = 192, 128


# One torch thread for every test here (see conftest.one_thread); scrypt at its fast setting.
pytestmark = [pytest.mark.usefixtures("one_thread", "fast_kdf"), needs_crypto]


@pytest.fixture(scope="module")
def image(kodak):
    return crop(kodak, H, W, 180, 260)


@pytest.fixture(scope="module")
def groups():
    return three_groups(W, H)          # background, person, car


@pytest.fixture(scope="module")
def plain(image, groups):
    data = codec.encode(image, groups, 4.0)
    return data, np.asarray(codec.decode(data).image)


K1 = crypto.key_from_bytes(b"first key, 32 bytes long........", "k1")
K2 = crypto.key_from_bytes(b"second key, 32 bytes long.......", "k2")


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two (N, 3) pixel sets, each channel's mean removed."""
    a = a[..., :3].astype(float) - a[..., :3].mean(0)
    b = b[..., :3].astype(float) - b[..., :3].mean(0)
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def decode(data, *args, **kw):
    warnings: list[str] = []
    res = codec.decode(data, *args, warn=warnings.append, **kw)
    return res, np.asarray(res.image), warnings


# ----- key material ---------------------------------------------------------------------------
def test_key_file_rules(tmp_path):
    good = tmp_path / "k.key"
    good.write_bytes(os.urandom(32))
    assert crypto.key_from_file(good).secret == good.read_bytes()
    short = tmp_path / "short.key"
    short.write_bytes(b"123456789012345")
    with pytest.raises(SsicError, match="holds 15 bytes; a key needs at least 16"):
        crypto.key_from_file(short)
    with pytest.raises(SsicError, match="no such file"):
        crypto.key_from_file(tmp_path / "missing.key")
    with pytest.raises(SsicError, match="is a directory"):
        crypto.key_from_file(tmp_path)
    big = tmp_path / "big.key"
    big.write_bytes(bytes(crypto.MAX_KEY_FILE_BYTES + 1))
    with pytest.raises(SsicError, match="over 64 KiB"):
        crypto.key_from_file(big)


def test_passphrase_from_env_and_secret_never_printed():
    k = crypto.key_from_env("P", {"P": "cafe\u0301 au lait"})          # decomposed é
    assert k == crypto.key_from_passphrase("caf\u00e9 au lait")       # NFC: same key
    assert "lait" not in repr(k) and "$P" in k.source
    with pytest.raises(SsicError, match="environment variable NOPE is not set"):
        crypto.key_from_env("NOPE", {})
    with pytest.raises(SsicError, match="is empty"):
        crypto.key_from_env("P", {"P": ""})


# ----- params ---------------------------------------------------------------------------------
def test_params_round_trip_and_refusals():
    kdf = crypto.KdfParams(15, 8, 1, bytes(range(16)))
    both = crypto.GroupParams(crypto.SealParams(kdf, b"c" * 8, b"n" * 12), crypto.ScrambleParams(kdf, b"s" * 8))
    blob = both.pack()
    sealed_scrambled = container.FLAG_SEALED | container.FLAG_SCRAMBLED
    assert crypto.GroupParams.unpack(blob, sealed_scrambled, "p") == both
    assert blob[:6] == bytes([1, 3, 1, 15, 8, 1])            # version, parts, scrypt, log2 N, r, p
    with pytest.raises(FormatError, match="do not match the group's flags"):
        crypto.GroupParams.unpack(blob, container.FLAG_SEALED, "p")
    with pytest.raises(FormatError, match="version 9"):
        crypto.GroupParams.unpack(b"\x09" + blob[1:], sealed_scrambled, "p")
    with pytest.raises(FormatError, match="expected 70"):
        crypto.GroupParams.unpack(blob + b"x", sealed_scrambled, "p")
    with pytest.raises(FormatError, match="missing"):
        crypto.GroupParams.unpack(b"", container.FLAG_SEALED, "p")
    # A forged file cannot make a decoder spend minutes or gigabytes in scrypt.
    # (19, 1, 2) fits the memory and work bounds but breaks scrypt's N < 2^(16·r): OpenSSL
    # refused it with MemoryError, which ended the whole decode.
    for log2_n, r, p in ((30, 8, 1), (20, 8, 1), (15, 8, 16), (15, 0, 1), (9, 8, 1), (19, 1, 2), (16, 1, 1)):
        forged = bytearray(blob)
        forged[3:6] = bytes([log2_n, r, p])
        with pytest.raises(FormatError, match="key derivation settings are not supported"):
            crypto.GroupParams.unpack(bytes(forged), sealed_scrambled, "p")


# ----- permutations -----------------------------------------------------------------------------
def _reference_fisher_yates(key: bytes, part: bytes, n: int, count: int) -> list[list[int]]:
    """The textbook algorithm, one permutation at a time, on the same keystream."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
    stream = Cipher(algorithms.ChaCha20(key, bytes(4) + part.ljust(12, b"\0")), mode=None).encryptor()
    words = np.frombuffer(stream.update(bytes(8 * count * (n - 1))), "<u8").reshape(n - 1, count)
    out = []
    for c in range(count):
        perm = list(range(n))
        for k, i in enumerate(range(n - 1, 0, -1)):
            j = (int(words[k, c]) * (i + 1)) >> 64
            perm[i], perm[j] = perm[j], perm[i]
        out.append(perm)
    return out


def test_permutations_are_fisher_yates_on_a_chacha20_stream():
    key = bytes(range(32))
    for n, count in ((2, 1), (7, 3), (300, 5), (5000, 2)):
        got = crypto.permutations(key, b"y", n, count).tolist()
        assert got == _reference_fisher_yates(key, b"y", n, count)
    # Pinned: the permutation is part of the format (a scrambled file must unscramble anywhere).
    assert crypto.permutations(key, b"y", 10, 2).tolist() == [[4, 5, 2, 1, 8, 9, 0, 6, 7, 3],
                                                              [8, 3, 1, 9, 4, 2, 0, 6, 7, 5]]
    assert crypto.permutations(key, b"z", 10, 1).tolist() != crypto.permutations(key, b"y", 10, 1).tolist()
    assert crypto.permutations(key, b"y", 1, 3).tolist() == [[0], [0], [0]]


def test_permutations_are_uniform():
    perms = crypto.permutations(bytes(32), b"u", 4, 12000)
    counts = Counter(map(tuple, perms.tolist()))
    expected = 12000 / 24
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert len(counts) == 24 and chi2 < 60          # 23 dof: p < 1e-4 only if biased


# ----- sealing at the section level -------------------------------------------------------------
def _sealed_header():
    from ssic_cli.mask import GroupMask
    gm = GroupMask(32, np.array([[0, 1], [1, 1]], np.uint8), ["person", "background"])
    header = container.header_from_mask(64, 64, 3, gm, "m", bytes(16), 4.0)
    params, cipher_key = crypto.new_seal(K1)
    header.groups[0].flags |= container.FLAG_SEALED
    header.groups[0].params = crypto.GroupParams(seal=params).pack()
    words = bytes(range(40))
    stored = crypto.seal(words, cipher_key, params.nonce, crypto.associated_data(header, 0, len(words) + 16))
    return header, stored, words


@pytest.mark.parametrize("change", [
    "width", "height", "quality", "model_id", "weights_hash", "channels", "name", "label", "group_index",
    "mask", "flags", "length"])
def test_associated_data_binds_the_section(change):
    header, stored, words = _sealed_header()
    assert crypto.open_section(header, 0, stored, crypto.Keyring([K1])).data == words
    g = 0
    if change == "width":
        header.width = 60
    elif change == "height":
        header.height = 63
    elif change == "quality":
        header.quality = 4.5
    elif change == "model_id":
        header.model_id = "n"
    elif change == "weights_hash":
        header.weights_hash = bytes(15) + b"\x01"
    elif change == "channels":
        header.channels = 1
    elif change == "name":
        header.groups[0].name = "face"
    elif change == "label":
        header.groups[0].label = "face"
    elif change == "group_index":                   # the same group record moved to another slot
        header.groups.reverse()
        header.block_ids = 1 - header.block_ids
        g = 1
    elif change == "mask":
        header.block_ids = np.array([[0, 0], [1, 1]], np.uint8)
    elif change == "flags":                         # SCRAMBLED added, params kept consistent
        sealed = crypto.GroupParams.unpack(header.groups[0].params, container.FLAG_SEALED, "p").seal
        header.groups[0].flags |= container.FLAG_SCRAMBLED
        header.groups[0].params = crypto.GroupParams(sealed, crypto.ScrambleParams(sealed.kdf, bytes(8))).pack()
    elif change == "length":
        stored = stored + b"\0\0\0\0"
    with pytest.raises(FormatError, match="fails authentication"):
        crypto.open_section(header, g, stored, crypto.Keyring([K1]))


def test_wrong_and_missing_keys():
    header, stored, _ = _sealed_header()
    with pytest.raises(crypto.KeyRequiredError, match="group 'person' is sealed; no key opens it"):
        crypto.open_section(header, 0, stored, crypto.Keyring())
    with pytest.raises(crypto.WrongKeyError, match="wrong key for group 'person'") as info:
        crypto.open_section(header, 0, stored, crypto.Keyring([K2]))
    assert isinstance(info.value, SsicError) and info.value.group == "person"
    ring = crypto.Keyring([K2, K1])                   # the right key anywhere in the ring
    assert crypto.open_section(header, 0, stored, ring).data == bytes(range(40))


def test_key_derivations_are_budgeted_per_decode():
    """A file may give each of 255 groups its own salt at the highest accepted cost: the keyring
    stops deriving at its budget instead of running scrypt for minutes per key."""
    kdfs = [crypto.KdfParams(10, 8, 1, bytes([i]) * 16) for i in range(10)]
    ring = crypto.Keyring([K1, K2], budget=5 * kdfs[0].work)
    ring.find(kdfs[0], bytes(8))                      # no match: both keys derived, 2 of 5 spent
    ring.find(kdfs[0], bytes(8))                      # remembered: nothing spent
    ring.find(kdfs[1], bytes(8))                      # 4 of 5
    with pytest.raises(crypto.KdfBudgetError, match="more key derivations than one decode allows"):
        ring.find(kdfs[2], bytes(8))


def test_a_decode_over_the_kdf_budget_keeps_the_groups_it_could_open(image, groups, monkeypatch):
    data = codec.encode(image, groups, 4.0, seal={"person": K1, "car": K1})
    per_group = crypto.FAST_KDF.work
    monkeypatch.setattr(crypto, "KDF_BUDGET", per_group)          # one derivation per decode
    res, _, warns = decode(data, keys=[K1])
    assert res.decoded == ["background", "person"] and res.unavailable == ["car"]
    assert any("'car': not tried" in w for w in warns)


# ----- through the codec -------------------------------------------------------------------------
def test_sealed_group_round_trip_and_messages(image, groups, plain):
    plain_bytes, full = plain
    data = codec.encode(image, groups, 4.0, seal={"person": K1})
    info = container.inspect(data)["groups"]
    assert info[1]["flags"] == ["present", "sealed"] and info[0]["flags"] == ["present"]
    ssb, ref = container.read_ssb(data), container.read_ssb(plain_bytes)
    assert ssb.index[1][1] == ref.index[1][1] + crypto.TAG_BYTES     # rANS words + GCM tag
    assert ssb.section(0) == ref.section(0) and ssb.section(2) == ref.section(2)

    res, img, warns = decode(data, keys=[K1])
    assert res.decoded == ["background", "person", "car"] and not warns
    assert np.array_equal(img, full)

    res, img, warns = decode(data)
    assert res.unavailable == ["person"] and res.decoded == ["background", "car"]
    assert warns == ["group 'person' is sealed; no key opens it; left empty"]
    assert img.shape == (H, W, 4) and (img[..., 3][block_pixels(groups, W, H) == 1] == 0).all()

    res, _, warns = decode(data, keys=[K2])
    assert res.unavailable == ["person"] and warns == ["wrong key for group 'person'; left empty"]
    res, _, warns = decode(data, keys=[K2, K2])
    assert "wrong key for group 'person' (none of the 2 keys given opens it)" in warns[0]


def test_layered_keys_open_only_their_groups(image, groups, plain):
    _, full = plain
    data = codec.encode(image, groups, 4.0, seal={"person": K1, "car": K2})
    pix = block_pixels(groups, W, H)
    for keys, opened in (([K1], {"person"}), ([K2], {"car"}), ([K2, K1], {"person", "car"})):
        res, img, _ = decode(data, keys=keys)
        assert set(res.decoded) == opened | {"background"}
        assert set(res.unavailable) == {"person", "car"} - opened
        for g in (0, 1, 2):
            if groups.names[g] in res.decoded:
                assert np.array_equal(img[..., :3][pix == g], full[pix == g])


def test_scrambled_group_decodes_to_noise_and_restores_exactly(image, groups, plain):
    _, full = plain
    data = codec.encode(image, groups, 4.0, scramble={"person": K1})
    assert container.inspect(data)["groups"][1]["flags"] == ["present", "scrambled"]
    pix = block_pixels(groups, W, H)

    res, img, warns = decode(data)
    assert res.decoded == ["background", "person", "car"] and res.scrambled == ["person"]
    assert warns == ["group 'person' is scrambled and no key was given; it is shown scrambled"]
    assert np.array_equal(img[pix != 1], full[pix != 1])             # other groups untouched
    # Visibly scrambled: the group no longer follows the picture (the plain decode does).
    scrambled_corr, plain_corr = _corr(img[pix == 1], image[pix == 1]), _corr(full[pix == 1], image[pix == 1])
    assert scrambled_corr < 0.3 and plain_corr > scrambled_corr + 0.2, (scrambled_corr, plain_corr)

    res, img, warns = decode(data, keys=[K1])
    assert np.array_equal(img, full) and not res.scrambled and not warns    # bit-exact restore
    res, alone, _ = decode(data, ["person"], keys=[K1])
    assert np.array_equal(alone[..., :3][pix == 1], full[pix == 1])

    _, _, warns = decode(data, keys=[K2])
    assert warns == ["wrong key for group 'person'; it is shown scrambled"]


def test_sealed_and_scrambled_with_two_keys(image, groups, plain):
    _, full = plain
    data = codec.encode(image, groups, 4.0, seal={"car": K1}, scramble={"car": K2})
    assert container.inspect(data)["groups"][2]["flags"] == ["present", "sealed", "scrambled"]
    pix = block_pixels(groups, W, H)
    res, img, _ = decode(data, keys=[K1])                    # opens the seal, stays scrambled
    assert res.scrambled == ["car"] and not np.array_equal(img[pix == 2], full[pix == 2])
    res, img, _ = decode(data, keys=[K2])                    # cannot open the seal at all
    assert res.unavailable == ["car"]
    res, img, _ = decode(data, keys=[K1, K2])
    assert np.array_equal(img, full)


def test_class_name_protects_every_instance(image):
    from ssic_cli.mask import GroupMask
    gm = three_groups(W, H)
    gm = GroupMask(gm.block_size, gm.ids, ["background", "person", "person#2"], ["background", "person", "person"])
    data = codec.encode(image, gm, 4.0, seal={"person": K1})
    assert [g["flags"] for g in container.inspect(data)["groups"]][1:] == [["present", "sealed"]] * 2
    said = []
    data = codec.encode(image, gm, 4.0, seal={"face": K1}, warn=said.append)   # a batch must not stop here
    assert "nothing to seal for 'face'" in said[0] and not any("sealed" in g["flags"] for g in container.inspect(data)["groups"])
    merged = GroupMask(gm.block_size, gm.ids, gm.names, gm.labels, {"face": "person#2"})
    data = codec.encode(image, merged, 4.0, seal={"face": K1}, warn=said.append)
    assert "'face' was merged into 'person#2'" in said[1]
    assert [g["flags"] for g in container.inspect(data)["groups"]] == [["present"], ["present"], ["present", "sealed"]]
    with pytest.raises(SsicError, match="given two different keys"):
        codec.encode(image, gm, 4.0, seal={"person": K1, "person#2": K2})


def test_extract_keeps_sealed_sections_intact(image, groups, plain):
    _, full = plain
    data = codec.encode(image, groups, 4.0, seal={"person": K1}, scramble={"car": K2})
    small = container.extract(data, ["person", "car"])
    a, b = container.read_ssb(data), container.read_ssb(small)
    assert b.section(1) == a.section(1) and b.index[1][1:] == a.index[1][1:]
    assert b.header.groups[1].params == a.header.groups[1].params
    res, img, _ = decode(small, keys=[K1, K2])
    assert res.decoded == ["person", "car"] and res.absent == ["background"] and res.complete
    pix = block_pixels(groups, W, H)
    assert np.array_equal(img[..., :3][pix == 1], full[pix == 1])
    assert np.array_equal(img[..., :3][pix == 2], full[pix == 2])


def _swap_in(dst: bytes, src: bytes, g_dst: int, g_src: int, with_file_id: bool = False) -> bytes:
    """``dst`` with group g_dst's params and section taken from ``src``'s group g_src (CRCs redone),
    and with ``src``'s file id too if ``with_file_id``."""
    a, b = container.read_ssb(dst), container.read_ssb(src)
    header = a.header
    header.groups[g_dst].params = b.header.groups[g_src].params
    if with_file_id:
        header.file_id = b.header.file_id
    sections = [a.section(i) for i in range(len(header.groups))]
    sections[g_dst] = b.section(g_src)
    return container.dump_ssb(header, sections)


def test_sealed_sections_cannot_move_between_files_or_groups(image, groups):
    data = codec.encode(image, groups, 4.0, seal={"person": K1, "car": K1})
    other = codec.encode(image, groups, 5.0, seal={"person": K1, "car": K1})
    for forged, group in ((_swap_in(data, other, 1, 1), "person"), (_swap_in(data, data, 1, 2), "person")):
        res, _, warns = decode(forged, keys=[K1])
        assert group in res.lost and "fails authentication" in " ".join(warns)


def test_sealed_sections_cannot_move_between_files_with_identical_headers(image, groups):
    """A fixed camera with a fixed grid: two encodes whose headers differ only in the random
    file id. A sealed section moved from one to the other no longer opens."""
    a = codec.encode(image, groups, 4.0, seal={"person": K1})
    b = codec.encode(image[::-1].copy(), groups, 4.0, seal={"person": K1})
    ha, hb = container.read_ssb(a).header, container.read_ssb(b).header
    assert ha.file_id != hb.file_id
    hb.file_id, hb.groups[1].params = ha.file_id, ha.groups[1].params    # (params travel with the section)
    assert ha == hb                                          # nothing else tells them apart
    res, _, warns = decode(_swap_in(a, b, 1, 1), keys=[K1])
    assert res.lost == ["person"] and "fails authentication" in " ".join(warns)
    res, _, _ = decode(_swap_in(a, b, 1, 1, with_file_id=True), keys=[K1])
    assert "person" in res.decoded                           # the file id is what binds it
    small = container.extract(a, ["person"])
    assert container.read_ssb(small).header.file_id == ha.file_id
    assert decode(small, keys=[K1])[0].decoded == ["person"]


def test_nothing_about_a_sealed_group_leaks(image, groups):
    """Change only the sealed group's pixels: every other byte of the file stays the same."""
    pix = block_pixels(groups, W, H)
    other = image.copy()
    other[pix == 1] = 255 - other[pix == 1]
    a = codec.encode(image, groups, 4.0, seal={"person": K1})
    b = codec.encode(other, groups, 4.0, seal={"person": K1})
    sa, sb = container.read_ssb(a), container.read_ssb(b)
    assert sa.section(1) != sb.section(1)
    # b == a with the sealed group's params and ciphertext replaced (index and CRC follow), and
    # its own random file id.
    assert _swap_in(a, b, 1, 1, with_file_id=True) == b
    for g in (0, 2):
        assert sa.section(g) == sb.section(g)


def test_scrambled_parse_does_not_need_the_key(image, groups):
    """Keyless decoding reads the stream to its exact end (check_end), so it never desyncs."""
    data = codec.encode(image, groups, 2.0, scramble={"background": K1, "person": K1, "car": K1})
    res, _, _ = decode(data)
    assert res.scrambled == ["background", "person", "car"] and not res.lost


# ----- command line ---------------------------------------------------------------------------
def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def labelled(tmp_path, image, groups):
    b = groups.block_size
    labels = np.kron(groups.ids, np.ones((b, b), np.uint8))[:H, :W]
    Image.fromarray(image).save(tmp_path / "img.png")
    Image.fromarray(labels).save(tmp_path / "labels.png")
    (tmp_path / "names.json").write_text(json.dumps({"0": "background", "1": "person", "2": "car"}))
    for name in ("k1", "k2"):
        (tmp_path / f"{name}.key").write_bytes(os.urandom(32))
    return tmp_path


def test_cli_seal_scramble_decode(labelled, capsys, monkeypatch):
    d = labelled
    out = d / "s.ssb"
    monkeypatch.setenv("SSIC_TEST_PASS", "correct horse battery staple")
    code, _, err = run(capsys, "encode", d / "img.png", "-o", out, "--mask", d / "labels.png", "--names",
                       d / "names.json", "--seal", f"person:{d / 'k1.key'}", "--seal", f"car:{d / 'k2.key'}",
                       "--scramble", "background", "--passphrase-env", "SSIC_TEST_PASS")
    assert code == 0, err
    code, text, _ = run(capsys, "inspect", out)
    lines = {line.split()[0]: line for line in text.splitlines()[3:]}
    assert lines["person"].endswith("present sealed") and lines["background"].endswith("present scrambled")

    code, _, err = run(capsys, "decode", out, "-o", d / "k1.png", "--key-file", d / "k1.key")
    assert code == 4 and (d / "k1.png").exists()           # written, but car and background are missing
    assert "wrong key for group 'car'; left empty" in err
    assert "wrong key for group 'background'; it is shown scrambled" in err
    code, _, err = run(capsys, "decode", out, "-o", d / "all.png", "--key-file", d / "k1.key",
                       "--key-file", d / "k2.key", "--passphrase-env", "SSIC_TEST_PASS")
    assert code == 0 and "warning" not in err
    assert Image.open(d / "all.png").mode == "RGB"

    code, _, err = run(capsys, "decode", out, "-o", d / "none.png", "--groups", "person")
    assert code == 2 and "group 'person' is sealed; no key opens it" in err
    assert "no group could be decoded" in err and not (d / "none.png").exists()


def test_cli_key_errors(labelled, capsys):
    d = labelled
    (d / "short.key").write_bytes(b"too short")
    base = ["encode", d / "img.png", "-o", d / "x.ssb", "--detector", "none"]
    code, _, err = run(capsys, *base, "--seal", f"background:{d / 'short.key'}")
    assert code == 2 and "a key needs at least 16" in err
    code, _, err = run(capsys, *base, "--seal", "background")
    assert code == 1 and "needs a key" in err
    code, _, err = run(capsys, *base, "--seal", "background", "--key-file", d / "k1.key", "--passphrase-env", "X")
    assert code == 1
    assert not (d / "x.ssb").exists()
    code, _, err = run(capsys, *base, "--seal", "person", "--key-file", d / "k1.key")      # no person here
    assert code == 0 and "nothing to seal for 'person'" in err and (d / "x.ssb").exists()
    (d / "x.ssb").unlink()
    code, _, err = run(capsys, "decode", d / "img.png", "-o", d / "y.png", "--key-file", d / "missing.key")
    assert code == 2 and "no such file" in err


def test_default_kdf_is_stored(image, monkeypatch):
    monkeypatch.setattr(crypto, "DEFAULT_KDF", crypto.KdfParams(15, 8, 1, b""))
    data = codec.encode(image[:64, :64], single_group(64, 64), 4.0, seal={"background": K1})
    g = container.read_ssb(data).header.groups[0]
    params = crypto.GroupParams.unpack(g.params, g.flags, g.name).seal
    assert (params.kdf.log2_n, params.kdf.r, params.kdf.p) == (15, 8, 1) and len(params.kdf.salt) == 16
    assert decode(data, keys=[K1])[0].decoded == ["background"]
