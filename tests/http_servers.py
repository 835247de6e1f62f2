"""A throw-away nginx on 127.0.0.1 serving a folder, for the remote-read tests and
``bench/remote_fetch.py``. Its access log records, per request, the URI, the Range header, the
status and the body bytes sent."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NginxServer:
    """``with NginxServer(root, run_dir) as server:`` serves ``root`` at ``server.url``."""

    def __init__(self, root: Path, run_dir: Path, extra: list[str] = ()):
        self.root, self.run_dir, self.extra = Path(root), Path(run_dir), list(extra)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_log = self.run_dir / "access.log"
        self._proc = None

    def _config(self) -> str:
        d = self.run_dir
        temp = "\n".join(f"    {k}_temp_path {d / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        extra = "\n".join(f"        {line}" for line in self.extra)
        return f"""
user root;
worker_processes 1;
daemon off;
pid {d / 'nginx.pid'};
error_log {d / 'error.log'};
events {{ worker_connections 64; }}
http {{
    log_format ranges '$uri "$http_range" $status $body_bytes_sent';
    access_log {self.access_log} ranges;
{temp}
    server {{
        listen 127.0.0.1:{self.port};
        root {self.root};
{extra}
    }}
}}
"""

    def __enter__(self) -> "NginxServer":
        if NGINX is None:
            raise RuntimeError("nginx is not installed")
        (self.run_dir / "nginx.conf").write_text(self._config())
        self._proc = subprocess.Popen([NGINX, "-p", str(self.run_dir), "-c", str(self.run_dir / "nginx.conf"),
                                       "-e", str(self.run_dir / "error.log")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"nginx did not start: {self._proc.stderr.read().decode()[-500:]}") from None
                time.sleep(0.05)
        raise RuntimeError("nginx did not start listening within 10 s")

    def __exit__(self, *exc) -> None:
        self._proc.terminate()
        self._proc.wait(10)
