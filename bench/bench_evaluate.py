"""Walk-forward evaluation of every baseline over the 41-company snapshot, windows 1:1 and 5:5.

    .venv/bin/python bench/bench_evaluate.py [--windows 1:1,5:5] [--models ...] [--start DATE] [--report DIR] [--budget 600]

Installs the bundled snapshot into a temporary data dir and runs exactly what ``stockllm evaluate`` runs
(default period: the last 10% of stored trading days). Prints, per model, the fit time (statsforecast model
selection, LSTM/CNN training), the number of forecasts, predict seconds (validation included) and forecasts
per second; then the total wall and CPU time and whether the total stays under ``--budget`` seconds.
Wall time on a shared machine is noisy; this process's CPU time is printed beside it. Exits 1 over budget.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from stockllm import store
from stockllm.cli.evaluate import DEFAULT_MODELS
from stockllm.evaluate import parse_windows, run_evaluation
from stockllm.evaluation_report import write_report
from stockllm.forecasters.registry import parse_model_list
from stockllm.universe import default_universe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", default="1:1,5:5")
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--start", default=None)
    parser.add_argument("--report", default=None, help="also write the report here")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds allowed (default: 600)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        store.install_snapshot(data_dir)
        companies = default_universe()
        wall, cpu = time.perf_counter(), time.process_time()
        result, scores = run_evaluation(data_dir, companies, parse_windows(args.windows), parse_model_list(args.models),
                                        args.start, progress=lambda m: print(m, file=sys.stderr, flush=True))
        if args.report:
            write_report(result, scores, Path(args.report), f"python bench/bench_evaluate.py {' '.join(sys.argv[1:])}")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu

    print(f"{len(companies)} companies, windows {args.windows}, period {result.start} → {result.end} (fit before {result.fit_end})")
    print(f"{'model':<12} {'fit s':>7} {'forecasts':>10} {'predict s':>10} {'forecasts/s':>12}")
    for name, t in result.timings.items():
        rate = t["forecasts"] / t["predict_s"] if t["predict_s"] else float("nan")
        print(f"{name:<12} {t['fit_s']:7.1f} {int(t['forecasts']):10d} {t['predict_s']:10.1f} {rate:12.1f}")
    total = sum(int(t["forecasts"]) for t in result.timings.values())
    print(f"total: {total} forecasts in {wall:.1f} s wall ({cpu:.1f} s CPU of this process), {total / wall:.1f} forecasts/s; "
          f"budget {args.budget:.0f} s: {'OK' if wall <= args.budget else 'OVER'}")
    return 0 if wall <= args.budget else 1


if __name__ == "__main__":
    sys.exit(main())
