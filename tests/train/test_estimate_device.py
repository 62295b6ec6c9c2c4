"""The device timings behind the step-time estimate: what is cached for later processes."""

from __future__ import annotations

import subprocess
import sys
import time

from src.train.estimate.device import DeviceSpeed

BUSY_LOOP = "import time\nend = time.time() + 3\nwhile time.time() < end: pass"


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
    again = DeviceSpeed("cpu", str(tmp_path))  # a later estimate of this process
    assert again._cached("noisy shape", measure) == 0.123
    assert len(calls) == 1  # not timed twice


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
