"""The Ray engine gives the local engine's walk-forward exactly, on a real local Ray instance with 2 workers."""

from __future__ import annotations

import pandas as pd
import pytest

from stockllm.cli import main
from stockllm.engines import LocalEngine, RayEngine, make_engine
from stockllm.errors import StockLLMError
from stockllm.evaluate import load_prices, walk_forward
from stockllm.forecasters.baselines import Drift, RandomWalk, StatsForecaster
from stockllm.forecasters.neural import NeuralForecaster
from stockllm.universe import resolve_code

ray = pytest.importorskip("ray")

CODES = ["2330", "2317", "3088", "6488", "5371"]  # TWSE and TPEx; 6488 is not in the snapshot (a skipped company)
WINDOWS = [(1, 1), (5, 5)]


@pytest.fixture(scope="module")
def ray_two_workers():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def models():
    """Fitted fresh for each engine: random walk, drift, ETS and a small LSTM (seeded, so both fits are equal)."""
    return {"random_walk": RandomWalk(), "drift": Drift(), "ets": StatsForecaster("ets"), "lstm": NeuralForecaster("lstm", hidden=4, epochs=2)}


def run(engine, data_dir):
    prices, skipped = load_prices(data_dir, [resolve_code(c) for c in CODES])
    prices = {code: frame.tail(160).reset_index(drop=True) for code, frame in prices.items()}
    return walk_forward(prices, models(), WINDOWS, start="2026-04-01", skipped=skipped, stride=3, engine=engine)


def test_ray_tasks_per_company_model_and_window_give_the_local_results_exactly(ray_two_workers, snapshot_data_dir):
    local = run(LocalEngine(), snapshot_data_dir)
    distributed = run(RayEngine(), snapshot_data_dir)
    assert ray.cluster_resources()["CPU"] == 2
    assert len(local.points) > 500 and set(local.points["model"]) == {"random_walk", "drift", "ets", "lstm"}
    pd.testing.assert_frame_equal(distributed.points, local.points, check_exact=True)
    pd.testing.assert_frame_equal(distributed.attempts, local.attempts, check_exact=True)
    assert distributed.skipped == local.skipped and any(s.code == "6488" for s in local.skipped)
    assert (distributed.start, distributed.fit_end, distributed.end) == (local.start, local.fit_end, local.end)


def test_the_command_line_evaluates_on_ray_and_refuses_an_address_without_it(ray_two_workers, snapshot_data_dir, tmp_path, capsys):
    args = ["evaluate", "--data-dir", str(snapshot_data_dir), "--codes", "2330", "3088", "--models", "drift",
            "--start", "2026-05-04", "--stride", "5"]
    assert main([*args, "--report", str(tmp_path / "local")]) == 0
    assert main([*args, "--report", str(tmp_path / "ray"), "--engine", "ray", "--address", "auto"]) == 0
    assert "ray: 8 tasks" in capsys.readouterr().err
    local, distributed = (pd.read_csv(tmp_path / name / "forecasts.csv") for name in ("local", "ray"))
    pd.testing.assert_frame_equal(distributed, local)
    assert main([*args, "--address", "auto"]) == 2
    assert capsys.readouterr().err.strip() == "error: --address is for --engine ray; drop it or add --engine ray"


def test_an_unknown_engine_is_refused():
    with pytest.raises(StockLLMError, match="unknown --engine 'spark'"):
        make_engine("spark")
