"""validate_forecast: what no trading record can look like is reported, one problem per line."""

import pandas as pd
import pytest

from stockllm.validation import validate_forecast

GOOD = {"open": [139.5, 143.0], "high": [144.5, 145.0], "low": [137.5, 141.0], "close": [143.0, 144.0], "capacity": [1208884, 900000]}
DATES = ["2025-01-06", "2025-01-07"]


def forecast(**changes) -> pd.DataFrame:
    data = {k: list(v) for k, v in GOOD.items()}
    for key, (i, value) in changes.items():
        data[key][i] = value
    return pd.DataFrame(data, index=pd.Index(DATES, name="date"))


def test_a_real_pair_of_days_is_valid():
    assert validate_forecast(forecast(), previous_close=139.0, expected_dates=DATES) == []
    assert validate_forecast(forecast(), previous_close=139.0) == []


def test_a_parsed_answer_with_a_date_column_is_accepted_too():
    frame = forecast().reset_index()
    assert validate_forecast(frame, 139.0, DATES) == []


@pytest.mark.parametrize("changes, expected", [
    ({"low": (0, 140.0)}, "2025-01-06: low 140 is above open 139.5"),
    ({"high": (1, 143.5)}, "2025-01-07: high 143.5 is below open 143 or close 144"),
    ({"open": (0, -1.0)}, "2025-01-06: prices must be positive (open -1)"),
    ({"capacity": (1, 0)}, "2025-01-07: capacity must be a positive number"),
    ({"close": (0, None)}, "2025-01-06: no value for close"),
])
def test_impossible_rows_are_reported(changes, expected):
    problems = validate_forecast(forecast(**changes), 139.0, DATES)
    assert any(p.startswith(expected) for p in problems), problems


def test_closes_must_follow_the_ten_percent_limit_chain():
    # 139.0 -> limit-up 152.5 (tick 0.5); 143.0 -> 157.0: the second day is checked against the first day's close.
    assert validate_forecast(forecast(close=(0, 152.5), high=(0, 152.5)), 139.0, DATES) == []
    problems = validate_forecast(forecast(close=(0, 153.0), high=(0, 153.0)), 139.0, DATES)
    assert problems == ["2025-01-06: high 153, close 153 outside the ±10% limits 125.5–152.5 of the previous close 139"]
    chained = validate_forecast(forecast(close=(1, 158.0), high=(1, 158.0)), 139.0, DATES)
    assert chained == ["2025-01-07: high 158, close 158 outside the ±10% limits 129–157 of the previous close 143"]


def test_dates_must_be_the_expected_next_trading_days():
    assert validate_forecast(forecast(), 139.0, ["2025-01-06", "2025-01-08"])[0].startswith("dates 2025-01-06, 2025-01-07 are not the expected")
    weekend = forecast().rename(index={"2025-01-07": "2025-01-11"})
    assert validate_forecast(weekend, 139.0) == ["2025-01-11 is not a trading day"]
    skipped = forecast().rename(index={"2025-01-07": "2025-01-08"})
    assert validate_forecast(skipped, 139.0) == ["2025-01-08 does not follow 2025-01-06 as the next trading day"]


def test_empty_or_incomplete_tables_are_problems_not_crashes():
    assert validate_forecast(pd.DataFrame(), 139.0) == ["the forecast has no rows"]
    assert validate_forecast(forecast().drop(columns=["low"]), 139.0) == ["the forecast lacks column(s) low"]
    assert "cannot be checked" in validate_forecast(forecast(), float("nan"))[0]
