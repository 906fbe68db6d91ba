"""``end_process``: a gateway process ends with its status even while a thread is busy in native code."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import logging, sys, threading, time
    import torch
    from gateway.cli.worker import end_process

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = threading.Event()

    def busy() -> None:  # an abandoned pipeline thread: inside PyTorch, not interruptible
        a = torch.randn(512, 512)
        started.set()
        while True:
            a = torch.tanh(a @ a)

    threading.Thread(target=busy, daemon=True).start()
    started.wait(30)
    time.sleep(0.2)
    logging.getLogger("gateway").info("abandoning ['worker-test:w0'] at shutdown")
    print("last line", end="")  # unflushed: end_process flushes it
    end_process(0)
    """
)


def test_the_process_ends_with_its_status_and_flushed_output_under_a_busy_native_thread() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "last line"
    assert "abandoning ['worker-test:w0'] at shutdown" in done.stderr
