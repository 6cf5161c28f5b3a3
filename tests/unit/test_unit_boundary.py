"""The unit tests' boundary (tests/unit/conftest.py) holds: a unit test that starts a process or
opens a network socket fails, even when the code under test catches the refusal."""

from __future__ import annotations

import multiprocessing
import socket
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.unit.conftest import REACHED, OutsideTheUnitError


def _spawn() -> None:
    process = multiprocessing.get_context("spawn").Process(target=print)
    process.start()
    process.join()


def _connect() -> None:
    with socket.create_connection(("127.0.0.1", 9), timeout=1):
        pass


REACHES: dict[str, Callable[[], object]] = {
    "subprocess": lambda: subprocess.run([sys.executable, "-c", "pass"], check=True),
    "multiprocessing": _spawn,
    "a TCP connection": _connect,
}


@pytest.mark.parametrize("reach", list(REACHES.values()), ids=list(REACHES))
def test_a_unit_test_cannot_leave_its_process(
    reach: Callable[[], object], request: pytest.FixtureRequest
) -> None:
    with pytest.raises(OutsideTheUnitError, match="move it to tests/integration"):
        reach()
    reached = request.node.stash[REACHED]
    assert reached  # caught or not, the test fails after its call
    reached.clear()  # here the refusal is what is tested


def test_a_socket_pair_stays_allowed() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"x")
        assert right.recv(1) == b"x"
