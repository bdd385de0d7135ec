"""Wall time and peak resident memory of a command run as its own process."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass


@dataclass
class Measurement:
    seconds: float
    peak_rss_mib: float
    output: str


def measure(cmd: list[str], env: dict[str, str] | None = None) -> Measurement:
    """Run ``cmd``; fail loudly when it fails. Peak RSS is the largest of the
    process and the children it waited for (Linux ``ru_maxrss``, KiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-3000:]}")
    return Measurement(seconds, usage.ru_maxrss / 1024, output)
