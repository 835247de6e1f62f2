"""Remote reads over HTTP: a real nginx on 127.0.0.1 serving test files (CI installs Debian's
nginx), a second server that ignores Range, and servers that misbehave. Bytes fetched are
counted by the client and checked against nginx's access log."""
from __future__ import annotations

import http.server
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssic_cli import codec, container
from ssic_cli.cli import main
from ssic_cli.mask import GroupMask
from ssic_cli.sources import FIRST_READ

from .http_servers import NGINX, NginxServer


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def www(tmp_path_factory, kodak, loaded):
    """A 4-group file of a whole Kodak image (≈ 200 kB: the groups' sections lie far apart)."""
    root = tmp_path_factory.mktemp("www")
    ids = np.zeros((16, 24), np.uint8)                    # 768×512 in 32-px blocks
    ids[4:12, 8:14] = 1
    ids[12:, :6] = 2
    ids[:4, 18:] = 3
    names = ["background", "person", "car", "sign"]
    data = codec.encode(kodak, GroupMask(32, ids, names, names), 8.0, weights=loaded)
    (root / "kodim.ssb").write_bytes(data)
    (root / "empty.ssb").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def nginx(www, tmp_path_factory):
    if NGINX is None:
        pytest.skip("nginx is not installed (CI installs Debian's nginx: see .ci/run)")
    server = NginxServer(www, tmp_path_factory.mktemp("nginx"),
                         extra=["location = /loop.ssb { return 302 /loop.ssb; }",
                                "location = /moved.ssb { return 301 /kodim.ssb; }"])
    with server:
        yield server.url, server.access_log


def _log_lines(log: Path, since: int) -> list[tuple[str, str, int, int]]:
    time.sleep(0.1)                                       # nginx writes the line after the response
    rows = []
    for line in log.read_text().splitlines()[since:]:
        uri, rng, status, sent = re.fullmatch(r'(\S+) "([^"]*)" (\d+) (\d+)', line).groups()
        rows.append((uri, rng, int(status), int(sent)))
    return rows


def _log_length(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_inspect_reads_only_the_head_of_the_file(nginx, www, capsys):
    base, log = nginx
    since = _log_length(log)
    code, out, err = run(capsys, "inspect", f"{base}/kodim.ssb", "--json")
    assert code == 0, err
    import json
    info = json.loads(out)
    assert [g["name"] for g in info["groups"]] == ["background", "person", "car", "sign"]
    assert info["transfer"]["requests"] == 1 and info["transfer"]["fetched_bytes"] == FIRST_READ
    assert _log_lines(log, since) == [("/kodim.ssb", f"bytes=0-{FIRST_READ - 1}", 206, FIRST_READ)]


def test_partial_decode_fetches_header_index_and_that_group_only(nginx, www, tmp_path, capsys):
    base, log = nginx
    local = container.read_ssb((www / "kodim.ssb").read_bytes())
    offset, length, _ = local.index[1]
    start = local.header_size + offset
    assert start > FIRST_READ                              # else the test would prove little
    since = _log_length(log)
    out = tmp_path / "person.png"
    code, _, err = run(capsys, "decode", f"{base}/kodim.ssb", "-g", "person", "-o", out, "-v")
    assert code == 0, err
    assert _log_lines(log, since) == [("/kodim.ssb", f"bytes=0-{FIRST_READ - 1}", 206, FIRST_READ),
                                      ("/kodim.ssb", f"bytes={start}-{start + length - 1}", 206, length)]
    fetched = FIRST_READ + length
    assert f"fetched {fetched} of {local.file_size} bytes" in err and fetched < local.file_size / 3
    want = np.asarray(codec.decode((www / "kodim.ssb").read_bytes(), ["person"]).image)
    assert np.array_equal(np.asarray(Image.open(out)), want)


def test_extract_of_a_remote_file_equals_the_local_extract(nginx, www, tmp_path, capsys):
    base, _ = nginx
    out = tmp_path / "p.ssb"
    assert run(capsys, "extract", f"{base}/kodim.ssb", "-g", "person,sign", "-o", out)[0] == 0
    assert out.read_bytes() == container.extract((www / "kodim.ssb").read_bytes(), ["person", "sign"])


def test_library_decodes_a_url_and_a_redirect(nginx, www):
    base, _ = nginx
    want = np.asarray(codec.decode((www / "kodim.ssb").read_bytes(), ["car"]).image)
    assert np.array_equal(np.asarray(codec.decode(f"{base}/moved.ssb", ["car"]).image), want)
    with open(www / "kodim.ssb", "rb") as fp:                # any seekable binary file works too
        assert np.array_equal(np.asarray(codec.decode(fp, ["car"]).image), want)


@pytest.mark.parametrize("path, message", [
    ("/missing.ssb", "HTTP 404 Not Found"),
    ("/loop.ssb", "more than 5 redirects"),
    ("/empty.ssb", "not an .ssb file (the file is empty)"),
])
def test_http_failures_are_one_line_and_write_nothing(nginx, tmp_path, capsys, path, message):
    base, _ = nginx
    out = tmp_path / "never.png"
    code, _, err = run(capsys, "decode", f"{base}{path}", "-o", out)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not list(tmp_path.iterdir())


# ----- a server that ignores Range, and servers that misbehave --------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    root: Path
    sent: list

    def log_message(self, *args):
        pass

    def do_GET(self):                                      # noqa: N802 - http.server's name
        name = self.path.rsplit("/", 1)[-1]
        body = (self.root / name).read_bytes() if (self.root / name).exists() else b""
        mode = self.path.split("/")[1]
        if mode == "slow":
            time.sleep(3)
            return
        if mode in ("endless", "overlong", "gzip", "drip"):
            self._hostile(mode, body)
            return
        if mode == "lying":                                # 206 with another range than asked
            self.send_response(206)
            self.send_header("Content-Range", f"bytes 100-199/{len(body)}")
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(body[100:200])
            return
        self.send_response(200)                            # "full" and "short" ignore Range
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "short":                                # hangs up after 60 % of what it promised
            body = body[: len(body) * 6 // 10]
        sent = 0
        try:
            for i in range(0, len(body), 4096):
                self.wfile.write(body[i:i + 4096])
                sent += len(body[i:i + 4096])
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.sent.append(sent)


    def _hostile(self, mode: str, body: bytes) -> None:
        """Servers that would make a careless client hold gigabytes or wait for hours; each
        stops after a bounded amount (the client must stop long before)."""
        sent, limit = 0, 64 << 20
        try:
            if mode == "endless":                          # 200, no length: the file, then zeros forever
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)
                sent = len(body)
                while sent < limit:
                    self.wfile.write(bytes(1 << 16))
                    sent += 1 << 16
            elif mode == "overlong":                       # a valid 206, then far more body than announced
                self.send_response(206)
                self.send_header("Content-Range", f"bytes 0-4095/{len(body)}")
                self.end_headers()
                self.wfile.write(body[:4096])
                while sent < limit:
                    self.wfile.write(bytes(1 << 16))
                    sent += 1 << 16
            elif mode == "gzip":                           # a small body that inflates to 64 MiB
                bomb = self.gzip_bomb
                self.send_response(206)
                self.send_header("Content-Range", f"bytes 0-4095/{len(body)}")
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(bomb)))
                self.end_headers()
                self.wfile.write(bomb)
            elif mode == "drip":                           # a byte every 0.2 s: no read ever times out
                self.send_response(206)
                self.send_header("Content-Range", f"bytes 0-4095/{len(body)}")
                self.send_header("Content-Length", "4096")
                self.end_headers()
                for i in range(4096):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.sent.append(sent)


@pytest.fixture(scope="module")
def plain_server(www):
    import gzip
    handler = type("Handler", (_Handler,), {"root": www, "sent": [],
                                            "gzip_bomb": gzip.compress(bytes(1 << 26), compresslevel=9)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.sent
    server.shutdown()


def test_server_ignoring_range_still_works_and_is_read_only_as_far_as_needed(plain_server, www, tmp_path, capsys):
    base, _ = plain_server
    local = container.read_ssb((www / "kodim.ssb").read_bytes())
    out = tmp_path / "bg.png"
    code, _, err = run(capsys, "decode", f"{base}/full/kodim.ssb", "-g", "background", "-o", out, "-v")
    assert code == 0, err
    end_of_background = local.header_size + local.index[0][0] + local.index[0][1]
    fetched = int(re.search(r"fetched (\d+) of", err).group(1))
    assert end_of_background <= fetched < local.file_size
    want = np.asarray(codec.decode((www / "kodim.ssb").read_bytes(), ["background"]).image)
    assert np.array_equal(np.asarray(Image.open(out)), want)
    assert run(capsys, "decode", f"{base}/full/kodim.ssb", "-o", tmp_path / "all.png")[0] == 0


@pytest.mark.parametrize("mode, message", [
    ("slow", "timed out"),
    ("short", "short response"),
    ("lying", "asked for bytes 0-4095, the server sent 100-199"),
])
def test_misbehaving_servers_give_one_line_and_no_output(plain_server, tmp_path, capsys, monkeypatch, mode, message):
    base, _ = plain_server
    monkeypatch.setenv("SSIC_HTTP_TIMEOUT", "1")
    out = tmp_path / "never.png"
    code, _, err = run(capsys, "decode", f"{base}/{mode}/kodim.ssb", "-o", out)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.parametrize("mode, message", [
    ("endless", "unexpected bytes after the last section"),
    ("overlong", "the server sent more than the 4096 bytes it announced"),
    ("gzip", "the server compressed the response (Content-Encoding: gzip)"),
    ("drip", "too slow"),
])
def test_hostile_servers_are_cut_off_early(plain_server, tmp_path, capsys, monkeypatch, mode, message):
    """Bounded memory and time whatever the server does (tracemalloc: the client's own peak)."""
    import tracemalloc
    base, _ = plain_server
    monkeypatch.setenv("SSIC_HTTP_TIMEOUT", "1")
    tracemalloc.start()
    try:
        code, _, err = run(capsys, "inspect", f"{base}/{mode}/kodim.ssb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert peak < 32 << 20, peak


def test_a_header_larger_than_the_first_read_is_read_in_more_requests(nginx, www):
    """200 groups: the header alone is several kB (no model needed: container level)."""
    rows, cols = 10, 20
    ids = np.arange(rows * cols, dtype=np.uint8).reshape(rows, cols)
    names = [f"object-{i:03d}-with-a-long-name" for i in range(rows * cols)]
    header = container.header_from_mask(cols * 16, rows * 16, 3, GroupMask(16, ids, names, names), "m", bytes(16), 4.0)
    sections = [bytes([i % 251]) * (40 + i) for i in range(len(names))]
    data = container.dump_ssb(header, sections)
    (www / "many.ssb").write_bytes(data)
    base, _ = nginx
    remote = container.read_ssb(f"{base}/many.ssb")
    assert remote.header_size > FIRST_READ and remote.header == header
    assert remote.transfer()["requests"] >= 2
    assert container.extract(remote, ["object-007-with-a-long-name", "object-150-with-a-long-name"]) == \
        container.extract(data, ["object-007-with-a-long-name", "object-150-with-a-long-name"])
