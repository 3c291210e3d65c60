"""Scaling out, measured as ratios: evaluation local vs Ray, and whole-market vs per-company fetch requests.

    nice -n 19 .venv/bin/python bench/bench_scale.py [--companies N] [--workers 2] [--models drift,ets,lstm]
                                                   [--windows 1:1,5:5] [--fetch-start 2024-12-02 --fetch-end 2026-08-31]

1. **Evaluation wall time**, local engine vs Ray with ``--workers`` local workers, on the whole-market snapshot
   ``shared/data/prices/market_ohlcv_2024-12_2026-08/`` (1,918 companies; ``--companies N`` takes N of them,
   every k-th code so both markets stay in), the same models, windows and period for both engines (the
   period: ``stockllm evaluate``'s default, the last 10% of stored trading days). Both runs include fitting,
   which happens once in the calling process for either engine; the forecasts of both are checked equal.
   On a machine with C cores the Ray speed-up is bounded by min(C, workers), and a busy machine lowers it.
2. **Requests**, counted by a real replay server on 127.0.0.1 (``tests/replay_server.py``), not timed: the
   per-company monthly fetch (``stockllm fetch``) of the same companies vs the whole-market daily fetch
   (``stockllm fetch --market all``) over ``--fetch-start`` … ``--fetch-end``. The per-company count grows
   with companies × months; the whole-market count is 2 × trading days whatever the number of companies.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date, datetime, time as clock
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the replay server

from replay_server import ReplayServer  # noqa: E402
from test_sources_prices import clients as unthrottled_clients  # noqa: E402

from stockllm.engines import LocalEngine, RayEngine  # noqa: E402
from stockllm.evaluate import parse_windows, run_evaluation  # noqa: E402
from stockllm.forecasters.registry import parse_model_list  # noqa: E402
from stockllm.sources.market_daily import fetch_market  # noqa: E402
from stockllm.sources.prices import TAIPEI, fetch_prices  # noqa: E402
from stockllm.universe import stored_companies  # noqa: E402

MARKET = ROOT.parent / "shared" / "data" / "prices" / "market_ohlcv_2024-12_2026-08"


def market_data_dir(target: Path, companies: int | None) -> Path:
    """A data dir whose ``prices/`` links ``companies`` evenly spaced files of the snapshot (all when None)."""
    files = sorted(p for p in MARKET.glob("*.csv") if p.name != "manifest.csv")
    if companies and companies < len(files):
        step = len(files) / companies
        files = [files[int(i * step)] for i in range(companies)]
    (target / "prices").mkdir(parents=True)
    for path in files:
        (target / "prices" / path.name).symlink_to(path)
    return target


def timed_evaluation(data_dir: Path, engine, windows, specs) -> tuple[float, float, pd.DataFrame]:
    """(wall seconds, of which fitting, scored points) of one ``stockllm evaluate`` run on ``engine``."""
    companies = stored_companies(data_dir)
    began = time.perf_counter()
    result, _ = run_evaluation(data_dir, companies, windows, specs, progress=lambda m: None, engine=engine)
    return time.perf_counter() - began, sum(t["fit_s"] for t in result.timings.values()), result.points


def counted_fetches(data_dir: Path, start: date, end: date) -> tuple[int, int, int, int]:
    """(per-company requests, whole-market requests, months, companies) for the stored companies over ``start`` … ``end``."""
    # The replay server generates TWSE months only from full-field snapshot rows; 4938's snapshot rows are Yahoo's.
    companies = [c for c in stored_companies(data_dir) if c.code != "4938"]
    evening = datetime.combine(end, clock(20, 0), TAIPEI)
    with ReplayServer() as server:
        clients = unthrottled_clients(server.url)
        with tempfile.TemporaryDirectory() as scratch:
            monthly = fetch_prices(Path(scratch) / "monthly", companies, start.year, start.month, now=evening, clients=clients, progress=False)
            per_company = server.count()
            fetch_market(Path(scratch) / "daily", start, end, companies=companies, now=evening, clients=clients, progress=False)
            whole_market = server.count() - per_company
    return per_company, whole_market, monthly.months, len(companies)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=None, help="evaluate N of the 1,918 companies (default: all)")
    parser.add_argument("--workers", type=int, default=2, help="local Ray workers (default: 2)")
    parser.add_argument("--models", default="drift,ets,lstm")
    parser.add_argument("--windows", default="1:1,5:5")
    parser.add_argument("--fetch-companies", type=int, default=None, help="companies of the request count (default: all 1,918)")
    parser.add_argument("--fetch-start", default="2024-12-02", help="first day of the request count (default: the snapshot's first month)")
    parser.add_argument("--fetch-end", default="2026-08-31", help="last day of the request count (default: the snapshot's last month)")
    args = parser.parse_args()
    windows, specs = parse_windows(args.windows), parse_model_list(args.models)

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = market_data_dir(Path(tmp) / "data", args.companies)
        n = len(list((data_dir / "prices").iterdir()))
        print(f"evaluation: {n} companies of {MARKET.name}, models {args.models} (+ random_walk), windows {args.windows}", flush=True)
        local_s, local_fit, local_points = timed_evaluation(data_dir, LocalEngine(), windows, specs)
        print(f"  local engine: {local_s:.1f} s wall, of which fitting {local_fit:.1f} s", flush=True)
        ray_engine = RayEngine(num_cpus=args.workers)
        ray_s, ray_fit, ray_points = timed_evaluation(data_dir, ray_engine, windows, specs)
        print(f"  ray engine, {args.workers} local workers: {ray_s:.1f} s wall, of which fitting {ray_fit:.1f} s "
              "(in the calling process for both engines; Ray start-up excluded)", flush=True)
        pd.testing.assert_frame_equal(ray_points, local_points)
        print(f"  same forecasts from both engines: {len(local_points)} scored points")
        cores = os.cpu_count()
        print(f"  local / ray wall time: {local_s / ray_s:.2f}x; forecasting only: {(local_s - local_fit) / (ray_s - ray_fit):.2f}x  (this machine: {cores} cores, load average {os.getloadavg()[0]:.1f}; "
              f"the speed-up is bounded by min(cores, workers) = {min(cores or 1, args.workers)})")

        start, end = date.fromisoformat(args.fetch_start), date.fromisoformat(args.fetch_end)
        fetch_dir = market_data_dir(Path(tmp) / "fetch", args.fetch_companies)
        per_company, whole_market, months, n = counted_fetches(fetch_dir, start, end)
        print(f"fetch requests {start} → {end}, {n} companies, counted at the replay server:")
        print(f"  per-company monthly fetch: {per_company} requests ({n} companies × {months} months)")
        print(f"  whole-market daily fetch:  {whole_market} requests (2 markets × {whole_market // 2} trading days, any number of companies)")
        print(f"  per-company / whole-market: {per_company / whole_market:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
