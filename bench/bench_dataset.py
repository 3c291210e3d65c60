"""Build time of the full fine-tuning dataset: the 41-company snapshot, 4 windows × 3 field sets.

    .venv/bin/python bench/bench_dataset.py [--max-seq-length 16384] [--repeat 1] [--budget 5]

The field sets are the write-up's three experiments (``all``, ``no-capacity``, ``ohlc-transaction``),
each built with the default windows 1:1, 5:5, 20:5, 60:20 and stride 1 (the full sliding set). The
default ``--max-seq-length`` keeps every window, so the bench formats all of them (at 2048 the long
windows are skipped for length and the build is faster). Prints, per field set, examples, wall and CPU
seconds and examples per second; then the totals, the first build's share spent reading the CSVs (read
once per file version and reused by later builds), and whether the total stays under ``--budget``.

Wall time on a shared machine is noisy; CPU time of this process is printed beside it. Exits 1 when the
total wall time exceeds the budget.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from stockllm import dataset, store
from stockllm.universe import default_universe

FIELD_SETS = ["all", "no-capacity", "ohlc-transaction"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seq-length", type=int, default=16384, help="token limit per example (default keeps every window)")
    parser.add_argument("--repeat", type=int, default=1, help="repeat the whole run N times in fresh data dirs and report each")
    parser.add_argument("--budget", type=float, default=5.0, help="seconds the 3 builds may take in total")
    args = parser.parse_args()
    companies = default_universe()
    worst = 0.0
    for run in range(args.repeat):
        tmp = Path(tempfile.mkdtemp(prefix="bench-dataset-"))
        try:
            store.install_snapshot(tmp / "data")
            wall0, cpu0, total = time.perf_counter(), time.process_time(), 0
            print(f"run {run + 1}: {'field set':<18}{'examples':>10}{'wall s':>9}{'cpu s':>8}{'examples/s':>12}")
            for fields in FIELD_SETS:
                spec = dataset.DatasetSpec(fields=fields, max_seq_length=args.max_seq_length)
                wall, cpu = time.perf_counter(), time.process_time()
                built = dataset.build_dataset(tmp / "data", companies, spec)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                n = sum(built.metadata["totals"].values())
                total += n
                print(f"       {fields:<18}{n:>10,}{wall:>9.2f}{cpu:>8.2f}{n / wall:>12,.0f}")
                companies_used = len(built.metadata["companies"])
                del built  # free the ~10⁵ prompt strings before the next build
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            print(f"       {'total':<18}{total:>10,}{wall:>9.2f}{cpu:>8.2f}{total / wall:>12,.0f}   ({companies_used} of {len(companies)} companies have all columns; budget {args.budget:.0f} s: {'OK' if wall < args.budget else 'OVER'})")
            worst = max(worst, wall)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            dataset._read_stored.cache_clear()  # the next run reads its CSVs again, like a fresh process
    return 0 if worst < args.budget else 1


if __name__ == "__main__":
    sys.exit(main())
