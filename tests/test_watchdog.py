"""The watchdog that ends a trial process (or a data-parallel rank) whose driver is gone."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKER = """
import sys, time
from pathlib import Path
from src.watchdog import exit_when
flag, words = Path(sys.argv[1]), Path(sys.argv[2])
exit_when(flag.exists, 0.05, "test-watch", lambda: words.write_text("closed"))
print("ready", flush=True)
time.sleep(60)  # the work it would otherwise go on doing for nobody
"""


def test_a_process_exits_once_what_it_works_for_is_gone(tmp_path):
    flag, words = tmp_path / "gone", tmp_path / "words"
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(flag), str(words)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        assert proc.poll() is None  # still working while it is not gone
        flag.touch()
        assert proc.wait(timeout=10) == 1  # then it stops within a few polls, with status 1
        assert words.read_text() == "closed"  # after its last words
    finally:
        proc.kill()
