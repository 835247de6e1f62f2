"""The command line: round trips, exit codes, one-line errors, no partial outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ssic_cli.cli import main

from .conftest import EXAMPLES, crop, needs_crypto


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def photo(tmp_path, kodak):
    path = tmp_path / "photo.png"
    Image.fromarray(crop(kodak, 96, 160, 200, 300)).save(path)
    return path


@pytest.fixture
def ssb(tmp_path, photo, capsys):
    out = tmp_path / "photo.ssb"
    assert run(capsys, "encode", photo, "-o", out, "--detector", "none")[0] == 0
    return out


def test_encode_inspect_decode(tmp_path, ssb, capsys):
    code, out, _ = run(capsys, "inspect", ssb, "--json")
    info = json.loads(out)
    assert code == 0 and info["width"] == 160 and info["groups"][0]["name"] == "background"
    code, out, _ = run(capsys, "inspect", ssb)
    assert code == 0 and "background" in out and "bpp" in out and "format version 3" in out
    dst = tmp_path / "out.png"
    assert run(capsys, "decode", ssb, "-o", dst)[0] == 0
    assert Image.open(dst).size == (160, 96)


def test_mask_groups_decode_and_extract(tmp_path, capsys):
    src = EXAMPLES / "coco_000000005001.jpg"
    out = tmp_path / "c.ssb"
    code, _, err = run(capsys, "encode", src, "-o", out, "-q", "2.5", "--mask", EXAMPLES / "coco_000000005001_labels.png",
                       "--names", EXAMPLES / "coco_000000005001_names.json")
    assert code == 0, err
    names = [g["name"] for g in json.loads(run(capsys, "inspect", out, "--json")[1])["groups"]]
    assert "person" in names and "background" in names
    person = tmp_path / "person.png"
    assert run(capsys, "decode", out, "-o", person, "--groups", "person")[0] == 0
    assert Image.open(person).mode == "RGBA"
    small = tmp_path / "p.ssb"
    assert run(capsys, "extract", out, "--groups", "person", "-o", small)[0] == 0
    assert small.stat().st_size < out.stat().st_size
    again = tmp_path / "again.png"
    assert run(capsys, "decode", small, "-o", again, "-g", "person")[0] == 0
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(person)))


def _damaged(ssb_path, tmp_path, kind):
    raw = bytearray(ssb_path.read_bytes())
    bad = tmp_path / f"{kind}.ssb"
    if kind == "truncated":
        raw = raw[: len(raw) // 2]
    elif kind == "header-flip":
        raw[20] ^= 0x10
    elif kind == "forged-size":
        raw[10:14] = (1 << 31).to_bytes(4, "little")
    elif kind == "not-ssb":
        raw = bytearray(b"GIF89a" + bytes(100))
    elif kind == "empty":
        raw = bytearray()
    bad.write_bytes(bytes(raw))
    return bad


@pytest.mark.parametrize("kind", ["truncated", "header-flip", "forged-size", "not-ssb", "empty"])
def test_bad_ssb_files_exit_2_with_one_line(tmp_path, ssb, capsys, kind):
    bad = _damaged(ssb, tmp_path, kind)
    before = bad.read_bytes()
    dst = tmp_path / "never.png"
    code, _, err = run(capsys, "decode", bad, "-o", dst)
    assert code == 2 and err.startswith("ssic: error:") and len(err.strip().splitlines()) == 1, err
    assert not dst.exists() and bad.read_bytes() == before
    assert not list(tmp_path.glob(".never*"))                  # no temp file left behind


def test_unknown_group_exit_2(tmp_path, ssb, capsys):
    code, _, err = run(capsys, "decode", ssb, "-o", tmp_path / "x.png", "--groups", "unicorn")
    assert code == 2 and "unknown group 'unicorn'" in err and "background" in err


@pytest.mark.parametrize("content", [b"", b"hello, not an image", b"\x89PNG\r\n\x1a\n" + bytes(30)])
def test_non_image_inputs_exit_2(tmp_path, capsys, content):
    src = tmp_path / "bad.jpg"
    src.write_bytes(content)
    dst = tmp_path / "bad.ssb"
    code, _, err = run(capsys, "encode", src, "-o", dst, "--detector", "none")
    assert code == 2 and err.startswith("ssic: error:") and len(err.strip().splitlines()) == 1
    assert not dst.exists()


@pytest.mark.parametrize("content", [b"", b"not weights", "pickled list", "pickled dict without a model"])
def test_bad_weights_files_exit_2_with_one_line(tmp_path, photo, capsys, content):
    import torch
    weights = tmp_path / "bad.pt"
    if content == "pickled list":
        torch.save([1, 2, 3], weights)
    elif content == "pickled dict without a model":
        torch.save({"model_id": "ssic-nonesuch", "state_dict": {}}, weights)
    else:
        weights.write_bytes(content)
    dst = tmp_path / "out.ssb"
    code, _, err = run(capsys, "encode", photo, "-o", dst, "--detector", "none", "--weights", weights)
    assert code == 2 and err.startswith("ssic: error: cannot load weights") and len(err.strip().splitlines()) == 1
    assert not dst.exists()


def test_missing_input_directory_input_and_same_output(tmp_path, photo, capsys):
    assert run(capsys, "encode", tmp_path / "nope.png", "-o", tmp_path / "a.ssb", "--detector", "none")[0] == 2
    assert run(capsys, "encode", tmp_path, "-o", tmp_path / "a.ssb", "--detector", "none")[0] == 2
    assert run(capsys, "encode", photo, "-o", tmp_path / "missing" / "a.ssb", "--detector", "none")[0] == 2
    code, _, err = run(capsys, "encode", photo, "-o", photo, "--detector", "none")
    assert code == 2 and "overwrite the input" in err
    assert Image.open(photo).size == (160, 96)


def test_default_block_size_is_the_librarys(tmp_path, photo, capsys):
    from ssic_cli.mask import DEFAULT_BLOCK_SIZE
    out = tmp_path / "b.ssb"
    assert run(capsys, "encode", photo, "-o", out, "--detector", "grid")[0] == 0
    info = json.loads(run(capsys, "inspect", out, "--json")[1])
    assert info["block_size"] == DEFAULT_BLOCK_SIZE == 16


def test_usage_errors_exit_1(tmp_path, photo, capsys):
    assert run(capsys, "encode", photo)[0] == 1                                   # no -o
    assert run(capsys, "encode", photo, "-o", tmp_path / "a.ssb", "-q", "9")[0] == 1
    assert run(capsys, "frobnicate")[0] == 1


def test_batch_one_line_per_failure(tmp_path, photo, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"nope")
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run(capsys, "encode", photo, bad, "-d", out, "--detector", "none")
    assert code == 2 and (out / "photo.ssb").exists() and not (out / "broken.ssb").exists()
    assert sum("ssic: error:" in line for line in err.splitlines()) == 1


def test_careless_options_are_usage_errors_before_any_work(tmp_path, photo, ssb, capsys):
    assert run(capsys, "encode", photo, "-o", tmp_path / "a.ssb", "-q", "nan")[0] == 1
    code, _, err = run(capsys, "decode", ssb, "-o", tmp_path / "a.png", "-g", "")
    assert code == 1 and "--groups names no group" in err and not (tmp_path / "a.png").exists()
    assert run(capsys, "extract", ssb, "-g", ",", "-o", tmp_path / "b.ssb")[0] == 1


def test_batch_inputs_with_the_same_name_are_refused(tmp_path, photo, capsys):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.jpg").write_bytes(photo.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run(capsys, "encode", tmp_path / "x" / "same.jpg", tmp_path / "y" / "same.jpg", "-d", out)
    assert code == 1 and "would both write" in err and list(out.iterdir()) == []


def test_a_batch_goes_on_past_an_internal_error_and_names_each_failed_file(tmp_path, ssb, capsys, monkeypatch):
    from ssic_cli import codec
    real = codec.decode
    calls = []

    def flaky(data, *args, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real(data, *args, **kw)

    monkeypatch.setattr(codec, "decode", flaky)
    garbage = tmp_path / "garbage.ssb"
    garbage.write_bytes(b"not an ssb at all")
    out = tmp_path / "out"
    out.mkdir()
    copy = tmp_path / "copy.ssb"
    copy.write_bytes(ssb.read_bytes())
    code, _, err = run(capsys, "decode", ssb, garbage, copy, "-d", out)
    lines = [line for line in err.splitlines() if "ssic: error:" in line]
    assert code == 2 and len(lines) == 2 and (out / "copy.png").exists()
    assert any(str(ssb) in line and "internal error (RuntimeError: boom)" in line for line in lines)
    assert any(str(garbage) in line and "not an .ssb file" in line for line in lines)
    assert "1 of 3 files done, 2 failed" in err


def _save(tmp_path, name, img: Image.Image, **kw):
    path = tmp_path / name
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("case", ["gray", "rgba", "16bit", "palette", "cmyk", "portrait", "tiny"])
def test_odd_images(tmp_path, kodak, capsys, case):
    base = Image.fromarray(crop(kodak, 48, 80, 100, 100))
    img, expect_mode = {
        "gray": (base.convert("L"), "L"),
        "rgba": (base.convert("RGBA"), "RGB"),
        "16bit": (Image.fromarray((np.asarray(base.convert("L")).astype(np.uint16) * 257)), "L"),
        "palette": (base.convert("P"), "RGB"),
        "cmyk": (base.convert("CMYK"), "RGB"),
        "portrait": (base.rotate(90, expand=True), "RGB"),
        "tiny": (Image.new("RGB", (1, 1), (200, 10, 10)), "RGB"),
    }[case]
    src = _save(tmp_path, "in.tif" if case == "cmyk" else "in.png", img)
    out, dec = tmp_path / "o.ssb", tmp_path / "o.png"
    assert run(capsys, "encode", src, "-o", out, "--detector", "none")[0] == 0
    assert run(capsys, "decode", out, "-o", dec)[0] == 0
    got = Image.open(dec)
    assert got.size == img.size and got.mode == expect_mode


def test_exif_rotation_is_applied(tmp_path, kodak, capsys):
    img = Image.fromarray(crop(kodak, 48, 80, 100, 100))
    exif = Image.Exif()
    exif[0x0112] = 6                                          # rotate 90° clockwise on display
    src = tmp_path / "rot.jpg"
    img.save(src, exif=exif, quality=95)
    out, dec = tmp_path / "rot.ssb", tmp_path / "rot.png"
    assert run(capsys, "encode", src, "-o", out, "--detector", "none")[0] == 0
    assert run(capsys, "decode", out, "-o", dec)[0] == 0
    assert Image.open(dec).size == (48, 80)


# ----- incomplete decodes: exit status 4 unless --allow-missing ------------------------------------
GOLDEN = EXAMPLES.parent / "tests" / "golden"
OLD_FILES = GOLDEN / "ssic-convhaar-783eaa21"        # golden files of the shipped weights


@needs_crypto
def test_sealed_group_without_key_writes_the_rest_and_exits_4(tmp_path, capsys):
    dst = tmp_path / "street.png"
    code, _, err = run(capsys, "decode", OLD_FILES / "protected-q8.ssb", "-o", dst)
    assert code == 4 and dst.exists()
    assert "'face' is sealed" in err and "incomplete: 2 wanted group(s) missing" in err and "Warning" not in err
    assert Image.open(dst).mode == "RGBA"
    assert run(capsys, "decode", OLD_FILES / "protected-q8.ssb", "-o", dst, "--allow-missing")[0] == 0
    code, _, err = run(capsys, "decode", OLD_FILES / "protected-q8.ssb", "-o", dst, "--key-file", GOLDEN / "golden.key")
    assert code == 0 and "incomplete" not in err
    code, _, _ = run(capsys, "decode", OLD_FILES / "protected-q8.ssb", "-o", dst, "--groups", "background")
    assert code == 0                                       # only what was asked for counts


def test_intact_section_that_does_not_decode_is_not_called_damaged(tmp_path, capsys):
    from ssic_cli import container
    ssb = container.read_ssb((OLD_FILES / "multi-q1.ssb").read_bytes())
    sections = [ssb.section(i) for i in range(len(ssb.header.groups))]
    words = bytearray(sections[1])
    words[len(words) // 2] ^= 0x5A                        # as if another machine's arithmetic had read it
    sections[1] = bytes(words)
    src = tmp_path / "derailed.ssb"
    src.write_bytes(container.dump_ssb(ssb.header, sections))       # CRCs recomputed: the file is "intact"
    dst = tmp_path / "out.png"
    code, _, err = run(capsys, "decode", src, "-o", dst)
    assert code == 4 and dst.exists()
    assert "group 'person' could not be decoded: its section is intact (CRC passes)" in err
    assert "damaged" not in err


# ----- shell pipes: "-" is standard input / output ----------------------------------------------
@pytest.mark.slow
def test_pipes_encode_decode_extract_through_stdin_and_stdout(tmp_path, photo, capsys):
    import subprocess
    import sys
    ssic = [sys.executable, "-m", "ssic_cli"]
    enc = subprocess.run(ssic + ["encode", "-", "-o", "-", "--detector", "grid"], input=photo.read_bytes(),
                         capture_output=True, cwd=tmp_path, timeout=300)
    assert enc.returncode == 0, enc.stderr.decode()[-1000:]
    assert enc.stdout[:4] == b"\x89SSB" and not (tmp_path / "-").exists()
    ext = subprocess.run(ssic + ["extract", "-", "-g", "tile", "-o", "-"], input=enc.stdout,
                         capture_output=True, cwd=tmp_path, timeout=300)
    assert ext.returncode == 0 and 0 < len(ext.stdout) < len(enc.stdout), ext.stderr.decode()
    dec = subprocess.run(ssic + ["decode", "-", "-o", "-"], input=enc.stdout, capture_output=True, cwd=tmp_path,
                         timeout=300)
    assert dec.returncode == 0 and dec.stdout[:8] == b"\x89PNG\r\n\x1a\n", dec.stderr.decode()[-1000:]
    assert not (tmp_path / "-").exists()
    (tmp_path / "piped.ssb").write_bytes(enc.stdout)
    assert run(capsys, "decode", tmp_path / "piped.ssb", "-o", tmp_path / "file.png")[0] == 0
    import io
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(dec.stdout))), np.asarray(Image.open(tmp_path / "file.png")))
    bad = subprocess.run(ssic + ["decode", "-", "-o", "-"], input=b"not an ssb", capture_output=True, timeout=300)
    assert bad.returncode == 2 and bad.stdout == b"" and bad.stderr.decode().count("\n") == 1


# ----- parallel batches -----------------------------------------------------------------------------
@pytest.mark.slow
def test_parallel_batches_encode_and_decode_with_one_line_per_failure(tmp_path, kodak, capsys, one_thread):
    # One thread here, as in each -j worker: a batch must give exactly a single decode's pixels under
    # the same arithmetic. Across thread counts the float synthesis may differ by one level
    # (test_portability bounds that), which is not what this test is about.
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        Image.fromarray(crop(kodak, 64, 96, 40 * i, 50 * i)).save(src / f"img{i}.png")
    (src / "broken.png").write_bytes(b"not an image")
    ssb_dir, png_dir = tmp_path / "ssb", tmp_path / "png"
    ssb_dir.mkdir()
    png_dir.mkdir()
    code, _, err = run(capsys, "encode", *sorted(src.iterdir()), "-d", ssb_dir, "-j", "2", "--detector", "grid")
    assert code == 2 and err.count("ssic: error:") == 1 and "broken.png" in err, err
    assert "3 of 4 files done, 1 failed" in err
    assert sorted(p.name for p in ssb_dir.iterdir()) == ["img0.ssb", "img1.ssb", "img2.ssb"]
    code, _, err = run(capsys, "decode", *sorted(ssb_dir.iterdir()), "-d", png_dir, "-j", "2")
    assert code == 0, err
    for i in range(3):
        alone = tmp_path / f"alone{i}.png"
        assert run(capsys, "decode", ssb_dir / f"img{i}.ssb", "-o", alone)[0] == 0
        assert np.array_equal(np.asarray(Image.open(png_dir / f"img{i}.png")), np.asarray(Image.open(alone)))
    code, _, err = run(capsys, "decode", *sorted(ssb_dir.iterdir()), "-d", png_dir, "-g", "unicorn", "-j", "2")
    assert code == 2 and err.count("ssic: error: ") == 3 and "0 of 3 files done" in err
    assert all(f"img{i}.ssb: unknown group 'unicorn'" in err for i in range(3))     # each line names its file


# ----- help and notices ---------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["", "encode", "decode", "inspect", "extract", "mask", "detectors", "train"])
def test_help_is_plain_text(capsys, command):
    code, out, _ = run(capsys, *([command] if command else []), "--help")
    assert code == 0 and "Usage:" in out and "`" not in out


def test_group_options_become_one_policy():
    from ssic_cli.cli import _grouping
    from ssic_cli.mask import GroupPolicy
    options = dict(mask_path=None, names_path=None, boxes_path=None, coco_path=None, detector=None,
                   detector_weights=None, block_size="16", coverage=0.0, group_by="class", classes=None,
                   priority_classes="person", min_score=0.25, max_groups=32)
    sources, policy = _grouping(**options)
    assert policy == GroupPolicy() and sources.uses_default            # the CLI's defaults are the policy's
    _, policy = _grouping(**{**options, "classes": "car,person", "priority_classes": "none", "block_size": "32"})
    assert policy.priority == ("car", "person") and policy.classes == ("car", "person") and policy.block_size == 32
    assert policy.first("face").priority == ("face", "car", "person")  # what --seal face adds


def test_batch_says_where_groups_come_from_once_per_run(tmp_path, kodak, capsys, monkeypatch, one_thread):
    """Offline without YOLO weights: one notice for the whole batch (also with -j), naming the way
    to person groups; no per-file repeat."""
    monkeypatch.delenv("SSIC_YOLO_WEIGHTS", raising=False)
    monkeypatch.setenv("SSIC_OFFLINE", "1")
    monkeypatch.setenv("SSIC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    for i in range(2):
        Image.fromarray(crop(kodak, 48, 64, 40 * i, 50 * i)).save(tmp_path / f"img{i}.png")
    (tmp_path / "out").mkdir()
    code, _, err = run(capsys, "encode", "img0.png", "img1.png", "-d", "out", "-j", "2")
    assert code == 0, err
    assert err.count("no person groups") == 1 and "--detector-weights" in err and "regions from" not in err, err


def test_extract_to_a_closed_standard_output_is_one_line(ssb):
    import subprocess
    import sys
    done = subprocess.run(["bash", "-c", f'"{sys.executable}" -m ssic_cli extract "{ssb}" -g background -o - >&-'],
                          capture_output=False, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert "standard output" in done.stderr


# ----- careless and hostile input: fail fast, one line, nothing left behind -----------------------------
def _header_only_ssb(path, names=("background", "person")):
    """A valid .ssb made by the container alone (its sections are not model output): enough for
    everything that happens before the model is needed."""
    from ssic_cli.container import dump_ssb, header_from_mask
    from ssic_cli.mask import GroupMask
    gm = GroupMask(16, np.arange(len(names), dtype=np.uint8)[None, :].repeat(2, axis=0), list(names))
    path.write_bytes(dump_ssb(header_from_mask(16 * len(names), 32, 3, gm, "ssic-convhaar", bytes(16), 4.0),
                              [b"x"] * len(names)))
    return path


def test_careless_paths_and_names_fail_before_torch_loads(tmp_path, photo):
    """Each error comes before any work: exit 2 (1 for an unknown image type), one line, no torch."""
    import subprocess
    import sys
    ssb = _header_only_ssb(tmp_path / "h.ssb")
    nowhere = tmp_path / "no" / "such" / "dir"
    cases = [
        (["encode", tmp_path / "nope.png", "-o", tmp_path / "a.ssb", "--detector", "none"], 2, "nope.png: no such file"),
        (["decode", tmp_path / "nope.ssb", "-o", tmp_path / "a.png"], 2, "nope.ssb: no such file"),
        (["encode", photo, "-o", nowhere / "a.ssb", "--detector", "none"], 2, f"output directory {nowhere} does not exist"),
        (["decode", ssb, "-o", nowhere / "a.png"], 2, "does not exist"),
        (["extract", ssb, "-g", "person", "-o", nowhere / "a.ssb"], 2, "does not exist"),
        (["mask", photo, "-o", nowhere / "a.png", "--detector", "none"], 2, "does not exist"),
        (["decode", ssb, "-o", tmp_path / "a.xyz"], 1, "unknown output image type '.xyz'"),
        (["mask", photo, "-o", tmp_path / "a.xyz", "--detector", "none"], 1, "unknown output image type '.xyz'"),
        (["decode", ssb, "-o", tmp_path / "a.png", "-g", "cat"], 2, "unknown group 'cat'; this file has: background, person"),
    ]
    script = ("import contextlib, io, json, sys\nfrom ssic_cli.cli import main\n"
              "for args in json.loads(sys.argv[1]):\n"
              "    with contextlib.redirect_stderr(io.StringIO()) as err:\n"
              "        rc = main(args)\n"
              "    print(json.dumps([rc, 'torch' in sys.modules, err.getvalue()]))\n")
    done = subprocess.run([sys.executable, "-c", script, json.dumps([[str(a) for a in c[0]] for c in cases])],
                          capture_output=True, text=True, timeout=120, check=False)
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == len(cases), done.stderr
    for (args, code, words), (rc, torch_loaded, err) in zip(cases, results):
        assert (rc, torch_loaded) == (code, False) and words in err, (args, rc, torch_loaded, err)
        assert code == 1 or (err.startswith("ssic: error: ") and err.count("\n") == 1), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.ssb", "photo.png"]


def test_a_batch_goes_on_past_a_missing_input(tmp_path, photo, capsys, one_thread):
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run(capsys, "encode", tmp_path / "gone.png", photo, "-d", out, "--detector", "none")
    assert code == 2
    assert "gone.png: no such file" in err and "1 of 2 files done, 1 failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["photo.ssb"]


def test_names_users_cannot_type_back_are_refused_when_written(tmp_path, photo, capsys):
    labels = tmp_path / "labels.png"
    ids = np.zeros((96, 160), np.uint8)
    ids[:48, :80] = 1
    Image.fromarray(ids).save(labels)
    names = tmp_path / "names.txt"
    dst = tmp_path / "out.ssb"
    for name in ("cat,dog", "cat:dog", "red\x1b[31mcat"):
        names.write_text(f"1 {name}\n", encoding="utf-8")
        code, _, err = run(capsys, "encode", photo, "-o", dst, "--mask", labels, "--names", names, "--detector", "none")
        assert code == 2 and len(err.splitlines()) == 1 and "cannot be used" in err and "--seal GROUPS:KEYFILE" in err
        assert repr(name) in err and "\x1b" not in err, err                # shown escaped, never raw
    assert not dst.exists()


def test_a_file_holding_such_a_name_still_decodes(tmp_path, photo, capsys):
    """Names with ',' or ':' that an older ssic wrote: every group decodes, the others extract."""
    from ssic_cli.container import dump_ssb, read_ssb
    made = tmp_path / "grid.ssb"
    assert run(capsys, "encode", photo, "-o", made, "--detector", "grid")[0] == 0
    ssb = read_ssb(made)
    ssb.header.groups[-1].name = "old,name:here"
    old = tmp_path / "old.ssb"
    old.write_bytes(dump_ssb(ssb.header, [ssb.section(i) for i in range(len(ssb.header.groups))]))
    assert run(capsys, "decode", old, "-o", tmp_path / "all.png")[0] == 0
    assert run(capsys, "decode", made, "-o", tmp_path / "before.png")[0] == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "all.png")), np.asarray(Image.open(tmp_path / "before.png")))
    keep = ssb.header.groups[0].name
    assert run(capsys, "extract", old, "-g", keep, "-o", tmp_path / "part.ssb")[0] == 0
    assert "old,name:here" in run(capsys, "inspect", tmp_path / "part.ssb")[1]


def test_sigterm_between_write_and_rename_leaves_no_temporary_file(tmp_path, capsys, monkeypatch):
    import os
    import signal
    from ssic_cli import atomic
    src = _header_only_ssb(tmp_path / "h.ssb")
    dst = tmp_path / "part.ssb"
    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: os.kill(os.getpid(), signal.SIGTERM))
    code, _, err = run(capsys, "extract", src, "-g", "person", "-o", dst)
    assert code == 143 and err == "ssic: terminated\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.ssb"]       # no part.ssb, no .part.ssb.*.tmp
    assert signal.getsignal(signal.SIGTERM) is before                    # the CLI's handler is gone again


@pytest.mark.slow
def test_ctrl_c_stops_a_parallel_batch_with_one_line(tmp_path):
    """The terminal sends SIGINT to the whole process group: the workers ignore it, the parent
    stops them and says one line; no traceback, no temporary file, files not started stay unmade."""
    import os
    import signal
    import subprocess
    import sys
    import time
    rng = np.random.default_rng(0)
    src = [tmp_path / f"i{i:02d}.png" for i in range(24)]
    for path in src:
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    out = tmp_path / "out"
    out.mkdir()
    batch = subprocess.Popen([sys.executable, "-m", "ssic_cli", "encode", *map(str, src), "-d", str(out), "-j", "2",
                              "--detector", "none"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    deadline = time.monotonic() + 120
    while not any(out.glob("*.ssb")) and batch.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)                                  # mid-batch: the workers are coding
    os.killpg(batch.pid, signal.SIGINT)
    _, err = batch.communicate(timeout=60)
    err = err.decode()
    assert batch.returncode == 130 and "Traceback" not in err and err.strip() == "ssic: interrupted", err
    made = sorted(p.name for p in out.iterdir())
    assert all(name.endswith(".ssb") for name in made) and len(made) < len(src), made


def test_transparency_is_refused_unless_alpha_says_and_animations_warn(tmp_path, photo, capsys):
    rgba = Image.open(photo).convert("RGBA")
    rgba.paste((255, 0, 0, 0), (0, 0, 32, 32))                          # red under transparency
    src, dst = _save(tmp_path, "t.png", rgba), tmp_path / "t.ssb"
    for command in (["encode", src, "-o", dst], ["mask", src, "-o", tmp_path / "m.png"]):
        code, _, err = run(capsys, *command, "--detector", "none")
        assert code == 2 and err.count("\n") == 1 and "transparent pixels" in err and "--alpha flatten" in err, err
    assert not dst.exists() and not (tmp_path / "m.png").exists()
    assert run(capsys, "encode", src, "-o", dst, "--detector", "none", "--alpha", "flatten")[0] == 0
    frames = [Image.open(photo), Image.open(photo).rotate(180)]
    anim = tmp_path / "anim.gif"
    frames[0].save(anim, save_all=True, append_images=frames[1:], duration=100)
    code, _, err = run(capsys, "encode", anim, "-o", tmp_path / "anim.ssb", "--detector", "none")
    assert code == 0 and err == f"ssic: warning: {anim}: animated image: only the first frame is coded\n", err
