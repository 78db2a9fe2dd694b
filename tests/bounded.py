"""Run a function in a child process under a time and memory limit, so a test that regresses into an
endless or enormous computation fails with a clear message instead of hanging the suite or the machine."""

from __future__ import annotations

import multiprocessing
import resource
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

T = TypeVar("T")

# More address space the function may map, over what the process already has when it starts: the limit is
# relative, because the parent (a pytest-xdist worker with everything imported, say) maps a varying amount.
MEMORY = 1280 * 1024 * 1024


def run_bounded(function: Callable[..., T], *args: Any, seconds: float = 60, memory: int = MEMORY) -> T:
    """`function(*args)` in a forked child; AssertionError if it takes longer than `seconds`, maps more
    than `memory` bytes of address space beyond what it started with, or raises. Its result must be
    picklable."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, memory, function, args), daemon=True)
    child.start()
    sender.close()
    try:
        if not receiver.poll(seconds):
            raise AssertionError(f"{function.__name__} did not finish within {seconds:g} s")
        try:
            ok, value = receiver.recv()
        except EOFError:
            raise AssertionError(f"{function.__name__} died (exit status {child.exitcode})") from None
    finally:
        child.kill()
        child.join()
        receiver.close()
    if not ok:
        raise AssertionError(f"{function.__name__} failed in the child:\n{value}")
    result: T = value
    return result


def _child(sender: Connection, memory: int, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    limit = _address_space() + memory
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        outcome: tuple[bool, Any] = (True, function(*args))
    except BaseException:  # a MemoryError included: the parent reports it
        outcome = (False, traceback.format_exc())
    sender.send(outcome)
    sender.close()


def _address_space() -> int:
    """This process's mapped address space in bytes (VmSize), which RLIMIT_AS limits."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")
