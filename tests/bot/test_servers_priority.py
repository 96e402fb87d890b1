"""The dialogue servers yield the CPU to the gateway's screen, card and page."""

from __future__ import annotations

import os

import psutil
import pytest

from bot.servers import CHILD_NICENESS

pytestmark = pytest.mark.rasa


def test_rasa_and_the_action_server_run_at_a_lower_priority_than_the_gateway(rasa_stack):
    own = os.nice(0)
    for pid in rasa_stack.pids():
        assert psutil.Process(pid).nice() == min(19, own + CHILD_NICENESS)
