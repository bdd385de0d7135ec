"""Check that every dependency plan resolves to real wheels on the package
index (network needed; not part of ``make test``).

For each (OS, architecture, Python, flavour) of ``ada3d_qgis.dependencies.plan``
it asks pip to resolve the plan's pinned requirements for that platform,
binary wheels only, without installing anything (``pip install --dry-run
--no-deps``), and prints one line per plan: ``ok`` or pip's complaint.
Exit status 1 when any plan fails.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

from ada3d_qgis.dependencies.plan import every_plan

#: pip's --platform tags for each (OS, architecture): pip does not widen an
#: explicit manylinux tag to older glibc versions, so they are listed.
PLATFORMS = {
    ("linux", "x86_64"): [f"manylinux_2_{n}_x86_64" for n in (28, 27, 17, 12, 5)]
    + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"],
    ("linux", "arm64"): [f"manylinux_2_{n}_aarch64" for n in (28, 27, 17)]
    + ["manylinux2014_aarch64"],
    ("windows", "x86_64"): ["win_amd64"],
    # pip widens macOS tags to older macOS versions itself.
    ("macos", "arm64"): ["macosx_14_0_arm64"],
    ("macos", "x86_64"): ["macosx_13_0_x86_64"],
}


def resolve(os_name: str, arch: str, python: tuple[int, int], requirements) -> str:
    with tempfile.TemporaryDirectory() as target:
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--quiet",
               "--ignore-installed", "--only-binary=:all:", "--target", target,
               "--python-version", f"{python[0]}.{python[1]}"]
        for tag in PLATFORMS[(os_name, arch)]:
            cmd += ["--platform", tag]
        proc = subprocess.run([*cmd, *requirements], capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return "ok"
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("ERROR")]
    return (errors or proc.stderr.strip().splitlines() or ["failed"])[0]


def main() -> int:
    failures = 0
    for (os_name, arch, python, flavour), plan in sorted(every_plan().items()):
        verdict = resolve(os_name, arch, python, plan.requirements)
        failures += verdict != "ok"
        print(f"{os_name:8} {arch:7} py{python[0]}.{python[1]:<3} {flavour:7} "
              f"{plan.onnxruntime:24} {verdict}", flush=True)
    summary = f"{failures} plan(s) failed" if failures else "every plan resolves"
    print(f"verify_plan: {summary}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
