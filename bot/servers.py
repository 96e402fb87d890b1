"""Start, watch and stop the Rasa server and the action server as child processes.

Children run in their own process groups, get SIGTERM when this process dies (Linux
``PR_SET_PDEATHSIG``), and are stopped as whole groups, so no ``rasa`` process outlives
``triage up``, ``triage simulate`` or a test session. Rasa telemetry is always off for them
(ARCHITECTURE.md invariant 8).
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bot import CONFIG_DIR, PROJECT_ROOT
from bot.files import private_file
from bot.rasa_endpoints import DialogueStores, EndpointsError, remove_endpoints, write_endpoints

log = logging.getLogger(__name__)

MODELS_DIR = PROJECT_ROOT / "models"
LOG_DIR = PROJECT_ROOT / "var" / "log"
STARTUP_TIMEOUT = 300.0
_PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """A server could not start, or died; the message names which and where its log is."""


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_of(url: str, default: int) -> int:
    return urlsplit(url).port or default


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def child_env() -> dict[str, str]:
    """The environment for child servers: telemetry off, no proxies for loopback."""
    env = dict(os.environ)
    env["RASA_TELEMETRY_ENABLED"] = "false"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["SANIC_HOST"] = "127.0.0.1"  # the action server binds here (rasa_sdk's default is 0.0.0.0)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
    return env


#: Rasa and the action server run this much lower in CPU priority than the gateway: when the
#: machine is saturated the screen, the hotline card and the page come first (invariant 1: they
#: never wait on Rasa), and the dialogue takes what is left. The paced benchmark measured it.
CHILD_NICENESS = 5


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    os.nice(CHILD_NICENESS)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def latest_model(models_dir: Path = MODELS_DIR) -> Path:
    models = sorted(models_dir.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    if not models:
        raise StackError(f"no trained Rasa model in {models_dir}: run `make setup` first")
    return models[-1]


@dataclass
class Child:
    name: str
    command: list[str]
    ready_url: str
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self, env: dict[str, str]) -> None:
        handle = open(private_file(self.log_path), "ab")  # logs may quote client text: owner-only
        self.process = subprocess.Popen(
            self.command,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        handle.close()

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, grace: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=5)
        # the group may hold workers that outlived the leader
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class RasaStack:
    """The action server and the Rasa server on loopback ports.

    >>> with RasaStack() as stack:          # free ports, waits until both answer
    ...     print(stack.rasa_url)
    """

    def __init__(
        self,
        rasa_port: int | None = None,
        action_port: int | None = None,
        model: Path | None = None,
        log_dir: Path = LOG_DIR,
        startup_timeout: float = STARTUP_TIMEOUT,
        token: str | None = None,
        stores: DialogueStores | None = None,
    ) -> None:
        # Tracker store, lock store and workers (bot/rasa_endpoints.py); None: all in memory.
        self.stores = stores
        self.endpoints_file: Path | None = None
        self.rasa_port = rasa_port or free_port()
        self.action_port = action_port or free_port()
        self.model = model
        self.startup_timeout = startup_timeout
        self.rasa_url = f"http://127.0.0.1:{self.rasa_port}"
        # Rasa's HTTP API (tracker, trigger_intent) is protected by a token: the one given
        # (settings.rasa_token), else a new one; clients get it from ``self.token``.
        self.token = token or secrets.token_hex(24)  # hex: never starts with "-"
        self.action_url = f"http://127.0.0.1:{self.action_port}"
        python = sys.executable
        self.children = [
            Child(
                "action server",
                [python, "-m", "rasa_sdk", "--actions", "actions", "--port", str(self.action_port)],
                f"{self.action_url}/health",
                log_dir / f"actions-{self.action_port}.log",
            ),
            Child(
                "Rasa server",
                [
                    python, "-m", "bot.rasa_run", "run", "--enable-api",
                    "--interface", "127.0.0.1", "--port", str(self.rasa_port),
                    "--model", "MODEL",
                    "--endpoints", "ENDPOINTS",
                    "--credentials", str(CONFIG_DIR / "credentials.yml"),
                    f"--auth-token={self.token}",
                ],
                f"{self.rasa_url}/status?token={self.token}",
                log_dir / f"rasa-{self.rasa_port}.log",
            ),
        ]

    def start(self) -> "RasaStack":
        """Start both servers and wait until both answer; raise StackError otherwise."""
        model = self.model or latest_model()
        for port in (self.rasa_port, self.action_port):
            if port_in_use(port):
                raise StackError(f"port {port} on 127.0.0.1 is already in use")
        env = child_env()
        env["TRIAGE_ACTION_URL"] = f"{self.action_url}/webhook"
        rasa = self.children[1]
        rasa.command[rasa.command.index("MODEL")] = str(model)
        endpoints, rasa_env = CONFIG_DIR / "endpoints.yml", dict(env)
        if self.stores is not None:
            try:  # the stores' URLs reach only Rasa, through its environment
                self.endpoints_file = endpoints = write_endpoints(self.stores, rasa_env)
            except (EndpointsError, OSError) as exc:
                raise StackError(f"cannot configure Rasa's tracker or lock store: {exc}") from exc
        rasa.command[rasa.command.index("ENDPOINTS")] = str(endpoints)
        try:
            for child in self.children:
                child.start(rasa_env if child is rasa else env)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        pending = list(self.children)
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while pending:
                dead = self.dead_child()
                if dead:
                    raise StackError(dead)
                for child in list(pending):
                    try:
                        if client.get(child.ready_url).status_code == 200:
                            pending.remove(child)
                            log.info("%s is ready", child.name)
                    except httpx.HTTPError:
                        pass
                if pending and time.monotonic() > deadline:
                    names = ", ".join(c.name for c in pending)
                    raise StackError(f"{names} did not answer within {self.startup_timeout:.0f} s")
                if pending:
                    time.sleep(0.5)

    def dead_child(self) -> str | None:
        """A message naming a child that has exited, or None while all run."""
        for child in self.children:
            code = child.exit_code()
            if code is not None:
                return f"the {child.name} exited with code {code}; see {child.log_path}"
        return None

    def pids(self) -> list[int]:
        return [c.process.pid for c in self.children if c.process is not None]

    def stop(self) -> None:
        """Stop every child process group (SIGTERM, then SIGKILL after a grace period)."""
        for child in reversed(self.children):
            child.stop()
        remove_endpoints(self.endpoints_file)
        self.endpoints_file = None

    def __enter__(self) -> "RasaStack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rasa_is_up(url: str, token: str | None = None) -> bool:
    """True when a Rasa server with a loaded model answers at ``url`` (with the token given)."""
    try:
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            response = client.get(f"{url.rstrip('/')}/status", params={"token": token} if token else {})
            return response.status_code == 200 and bool(response.json().get("model_id"))
    except (httpx.HTTPError, ValueError):
        return False

