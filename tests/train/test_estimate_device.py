"""The device timings behind the step-time estimate: what is cached for later processes, and
what a busy neighbour does to them."""

from __future__ import annotations

import subprocess
import sys
import time

import torch

from src.train.estimate.device import DeviceSpeed

BUSY_LOOP = "import time\nend = time.time() + 3\nwhile time.time() < end: pass"
# A neighbour as a second training run is: torch ops on every core, for up to a minute.
BUSY_TORCH = (
    "import time, torch\n"
    "a = torch.randn(1024, 1024)\n"
    "print('ready', flush=True)\n"
    "end = time.time() + 60\n"
    "while time.time() < end: [a @ a for _ in range(10)]; torch.randn(2**22).relu_()"
)


def test_a_timing_taken_while_another_process_is_busy_is_reused_here_but_not_written(tmp_path):
    calls = []

    def measure():  # 0.3 s of wall time while the busy loop holds a core
        calls.append(1)
        time.sleep(0.3)
        return 0.123

    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        time.sleep(0.5)  # the interpreter started and spinning
        speed = DeviceSpeed("cpu", str(tmp_path))
        assert speed._cached("noisy shape", measure) == 0.123
        speed.save()
    finally:
        busy.kill()
        busy.wait()
    assert not speed.path.exists()  # nothing measured quietly: nothing written
    timed = len(calls)  # on every thread, then on one
    again = DeviceSpeed("cpu", str(tmp_path))  # a later estimate of this process
    assert again._cached("noisy shape", measure) == 0.123
    assert len(calls) == timed  # not timed again


def test_a_quiet_timing_is_written_for_later_processes(tmp_path):
    speed = DeviceSpeed("cpu", str(tmp_path))
    speed._cached("a shape", lambda: 0.5)  # instantaneous: no other process can be seen in it
    speed.save()
    code = (
        "from src.train.estimate.device import DeviceSpeed\n"
        f"print(DeviceSpeed('cpu', {str(tmp_path)!r}).cache['a shape'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0.5"


def _one_thread_matmul_s(a, b) -> float:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a @ b
        best = float("inf")
        for _ in range(20):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
        return best
    finally:
        torch.set_num_threads(threads)


def test_matmuls_timed_beside_a_busy_torch_process_are_no_slower_than_on_one_thread(tmp_path):
    """Beside another multi-threaded torch process, an op on all of this process's threads
    waits for whichever thread was preempted: timed as they ran, most matmuls took 10-20x their
    quiet time here (and the step-time estimate 5-60x). Each timing is bounded by the same matmul
    on one thread, which the neighbour barely slows."""
    shapes = [(1024, 128, 512), (1024, 256, 256), (512, 512, 512), (2048, 64, 256)]
    busy = subprocess.Popen([sys.executable, "-c", BUSY_TORCH], stdout=subprocess.PIPE, text=True)
    try:
        assert busy.stdout.readline().strip() == "ready"
        time.sleep(1)
        speed = DeviceSpeed("cpu", str(tmp_path))
        timed, one_thread = [], []
        for m, k, n in shapes:
            timed.append(speed.matmul_s(2 * m * k * n, m, n, "float32"))
            one_thread.append(_one_thread_matmul_s(torch.randn(m, k), torch.randn(k, n)))
    finally:
        busy.kill()
        busy.wait()
    bounded = [t <= 1.5 * one for t, one in zip(timed, one_thread, strict=True)]
    assert all(bounded), (timed, one_thread)
