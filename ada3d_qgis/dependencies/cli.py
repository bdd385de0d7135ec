"""Command line of the dependency plan, offline and without QGIS:

``python -m ada3d_qgis.dependencies plan --os linux --python 3.12 --nvidia-driver 580.65``
prints the pinned pip requirements, one per line (``plan`` alone: this
machine, as the plugin's installer detects it); an unsupported machine exits
with status 2 and a sentence. ``oldest-onnxruntime`` prints the oldest
onnxruntime version any plan installs.
"""

from __future__ import annotations

import argparse
import sys

from . import plan as rules


def _compute_capability(text: str) -> tuple[int, int]:
    try:
        major, minor = (int(p) for p in text.split("."))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"compute capability {text!r} is not MAJOR.MINOR") from exc
    return major, minor


def _python(text: str) -> tuple[int, int]:
    try:
        return rules.parse_python(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"Python version {text!r} is not MAJOR.MINOR") from exc


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m ada3d_qgis.dependencies", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="print the pinned pip requirements for a machine")
    p.add_argument("--os", choices=rules.OSES, help="default: this machine's")
    p.add_argument("--python", type=_python, help="MAJOR.MINOR of QGIS's Python")
    p.add_argument("--arch", choices=rules.ARCHES, help="default: arm64 on macos, else x86_64")
    p.add_argument("--nvidia-driver", help="NVIDIA driver version; omit for no NVIDIA GPU")
    p.add_argument("--compute-capability", type=_compute_capability,
                   help="of the NVIDIA GPU, e.g. 8.6 (CUDA 13 needs 7.5)")
    p.add_argument("--cpu-only", action="store_true", help="the CPU onnxruntime, whatever the GPU")
    p.add_argument("--why", action="store_true", help="also print why, on standard error")
    sub.add_parser("oldest-onnxruntime", help="the oldest onnxruntime any plan installs")
    return top


def machine_from(args: argparse.Namespace) -> rules.Machine:
    if args.os is None and args.python is None:
        from .detect import this_machine

        machine = this_machine(cpu_only=args.cpu_only)
        if args.nvidia_driver:
            machine = rules.Machine(machine.os, machine.python, machine.arch,
                                    args.nvidia_driver, args.compute_capability, args.cpu_only)
        return machine
    if args.os is None or args.python is None:
        raise rules.UnsupportedMachineError(
            "Give both --os and --python, or neither (this machine)."
        )
    arch = args.arch or ("arm64" if args.os == "macos" else "x86_64")
    return rules.Machine(args.os, args.python, arch, args.nvidia_driver,
                         args.compute_capability, args.cpu_only)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "oldest-onnxruntime":
        print(rules.oldest_onnxruntime())
        return 0
    try:
        plan = rules.plan_for(machine_from(args))
    except rules.UnsupportedMachineError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print("\n".join(plan.requirements))
    if args.why:
        print(f"{plan.flavour}: {plan.reason}", file=sys.stderr)
    return 0
