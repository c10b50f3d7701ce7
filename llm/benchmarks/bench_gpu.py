"""GPU benchmark of the int4 fast path; needs CUDA and Triton but no checkpoint.

Random int4 weights at the full Qwen-14B-Chat-Int4 shape are made directly on the GPU (speed does
not depend on the values). Prints a human table, writes a PNG plot and ends with one JSON line.

    python -m llm.benchmarks.bench_gpu --part kernels --out results/
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("kernels", "rows", "e2e", "agent", "all"), default="all")
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--quick", action="store_true", help="fewer contexts and steps")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
    }
    if args.part in ("kernels", "all"):
        from llm.benchmarks.kernels_part import kernel_table, run_kernels

        report["kernels"] = run_kernels(quick=args.quick)
        print(kernel_table(report["kernels"]))
    if args.part in ("rows", "all"):
        from llm.benchmarks.rows_part import rows_table, run_rows

        report["rows"] = run_rows()
        print(rows_table(report["rows"]))
    if args.part in ("e2e", "all"):
        from llm.benchmarks.e2e_part import e2e_table, run_e2e

        report["e2e"] = run_e2e(args.out, quick=args.quick, tuned=report.get("kernels"))
        print(e2e_table(report["e2e"]))
    if args.part == "agent":
        from llm.benchmarks.e2e_part import run_agent

        report["agent"] = run_agent()
    (args.out / "bench_gpu.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
