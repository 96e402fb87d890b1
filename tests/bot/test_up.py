"""`triage up`: console chat end to end, clean shutdown, and no limping on a dead child."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bot.servers import free_port

pytestmark = [pytest.mark.rasa, pytest.mark.slow]


def processes_with(fragment: str) -> list[int]:
    """PIDs of live processes whose command line contains ``fragment``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if fragment in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


class Up:
    """A `triage up` child process with its output read on threads."""

    def __init__(self, tmp_path: Path) -> None:
        self.rasa_port, self.action_port = free_port(), free_port()
        env = dict(os.environ,
                   TRIAGE_RASA_URL=f"http://127.0.0.1:{self.rasa_port}",
                   TRIAGE_ACTION_URL=f"http://127.0.0.1:{self.action_port}",
                   TRIAGE_DB=str(tmp_path / "up.db"),
                   TRIAGE_SCREEN_MODEL="off")  # the console and process handling, not the model's tiers
        env.pop("TELEGRAM_BOT_TOKEN", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "up"], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        threading.Thread(target=lambda: [self.out.put(l) for l in self.proc.stdout], daemon=True).start()
        threading.Thread(target=lambda: [self.err.append(l) for l in self.proc.stderr], daemon=True).start()

    def wait_for(self, text: str, timeout: float = 300) -> str:
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.out.get(timeout=1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            seen.append(line)
            if text in line:
                return "".join(seen)
        raise AssertionError(f"never saw {text!r}; stdout={''.join(seen)!r} stderr={''.join(self.err)!r}")

    def say(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def children(self) -> list[int]:
        return processes_with(f"--port {self.rasa_port}") + processes_with(f"--port {self.action_port}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def up(tmp_path):
    instance = Up(tmp_path)
    yield instance
    instance.kill()
    for pid in instance.children():  # never leave a process behind, even on failure
        os.kill(pid, signal.SIGKILL)


def test_console_chat_then_sigterm_leaves_no_child_process(up):
    up.wait_for("Console mode")
    assert len(up.children()) == 2
    up.say("hello")
    up.wait_for("not an emergency service")
    up.say("/restart")
    up.say("are you a bot?")
    up.wait_for("not a person")
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(timeout=60) == 0
    time.sleep(0.5)
    assert up.children() == []
    assert "stopped all servers" in "".join(up.err)


def test_a_dead_child_is_named_and_up_exits_nonzero(up):
    up.wait_for("Console mode")
    (action_pid,) = processes_with(f"--port {up.action_port}")
    os.kill(action_pid, signal.SIGKILL)
    assert up.proc.wait(timeout=60) == 1
    time.sleep(0.5)
    assert "the action server exited" in "".join(up.err)
    assert up.children() == []
