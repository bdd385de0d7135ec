"""Wall time and peak resident memory of a command run as its own process.

Linux counts in a child's peak RSS the memory of the process it was forked
from (until exec, and ``ru_maxrss`` keeps the maximum across exec). The
benchmark process holds torch and models, so commands are launched from a
fresh, small launcher: ``python -m bench.measure CMD...`` prints the figures.
"""

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
    """Run ``cmd`` through the small launcher; fail loudly when it fails."""
    import json
    import sys

    proc = subprocess.run([sys.executable, "-m", "bench.measure", *cmd], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    head, _, output = proc.stdout.partition("\n")
    figures = json.loads(head)
    return Measurement(figures["seconds"], figures["peak_rss_mib"], output)


def _measure_here(cmd: list[str], env: dict[str, str] | None = None) -> Measurement:
    """Run ``cmd`` as a child of this process. Peak RSS is the largest of the
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


if __name__ == "__main__":
    import json
    import sys

    m = _measure_here(sys.argv[1:])
    print(json.dumps({"seconds": m.seconds, "peak_rss_mib": m.peak_rss_mib}))
    print(m.output)
