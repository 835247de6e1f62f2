"""Byte sources (ssic_cli.sources): pipes, FIFOs and devices are read only as far as the file's
own header says it goes; garbage is refused after its first bytes. HTTP sources are exercised
against real servers in test_remote.py."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import threading

import pytest

from ssic_cli import sources
from ssic_cli.container import dump_ssb, header_from_mask, read_ssb
from ssic_cli.errors import FormatError, SsicError
from ssic_cli.mask import single_group

from .conftest import ROOT


@pytest.fixture
def ssb_bytes() -> bytes:
    return dump_ssb(header_from_mask(64, 48, 3, single_group(64, 48), "tiny", bytes(16), 4.0), [b"abcd"])


class Endless(io.RawIOBase):
    """A pipe that never ends: ``lead`` and then zeros; counts what was read from it."""

    def __init__(self, lead: bytes = b""):
        self.lead, self.read_bytes = lead, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = len(buf)
        chunk = (self.lead[self.read_bytes:] + bytes(n))[:n] if self.read_bytes < len(self.lead) else bytes(n)
        buf[:n] = chunk
        self.read_bytes += n
        return n


def test_a_pipe_is_parsed_as_far_as_its_header_goes(ssb_bytes):
    ssb = read_ssb(_Pipe(ssb_bytes))
    assert ssb.section(0) == b"abcd" and ssb.file_size == len(ssb_bytes)


def test_garbage_on_a_pipe_is_refused_after_its_first_bytes():
    pipe = Endless()
    with pytest.raises(FormatError, match="not an .ssb file"):
        read_ssb(pipe)
    assert pipe.read_bytes < 1 << 20


def test_a_valid_header_followed_by_endless_bytes_is_read_one_byte_past_its_end(ssb_bytes):
    pipe = Endless(ssb_bytes)
    with pytest.raises(FormatError, match="unexpected bytes after the last section"):
        read_ssb(pipe)
    assert pipe.read_bytes < 2 << 20


def test_a_device_path_is_a_stream_not_a_file_to_slurp():
    with pytest.raises(FormatError, match="not an .ssb file"):
        read_ssb("/dev/zero")


def test_a_fifo_nobody_writes_to_gives_up(tmp_path, monkeypatch):
    fifo = tmp_path / "f.ssb"
    os.mkfifo(fifo)
    monkeypatch.setattr(sources, "STREAM_WAIT", 0.2)
    with pytest.raises(SsicError, match="nothing to read after 0.2 s"):
        read_ssb(fifo)


def test_a_fifo_with_a_writer_is_read(tmp_path, ssb_bytes):
    fifo = tmp_path / "f.ssb"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(ssb_bytes))
    writer.start()
    try:
        assert read_ssb(fifo).section(0) == b"abcd"
    finally:
        writer.join()


def test_missing_paths_and_directories_are_one_line(tmp_path):
    with pytest.raises(SsicError, match="no such file"):
        read_ssb(tmp_path / "nope.ssb")
    with pytest.raises(SsicError, match="is a directory"):
        read_ssb(tmp_path)


def test_cli_reads_stdin_as_a_stream(ssb_bytes, tmp_path):
    """1 GiB of zeros on stdin is refused at once, not after being held in memory."""
    code = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-m', 'ssic_cli', 'inspect', '-'], "
            "stdin=subprocess.PIPE, stderr=subprocess.PIPE)\n"
            "try:\n    p.stdin.write(bytes(1 << 30))\nexcept BrokenPipeError:\n    pass\n"
            "print(p.wait(), p.stderr.read().decode().strip())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.stdout.startswith("2 ssic: error: not an .ssb file"), out.stdout + out.stderr


class _Pipe(io.RawIOBase):
    def __init__(self, data: bytes):
        self._data, self._at = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = min(len(buf), len(self._data) - self._at)
        buf[:n] = self._data[self._at:self._at + n]
        self._at += n
        return n
