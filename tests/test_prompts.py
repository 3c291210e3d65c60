"""The prompt format: the write-up's 9921 example exactly, natural multi-day text, exact round trips, a tolerant parser."""

import pandas as pd
import pytest

from stockllm import prompts, store
from stockllm.errors import StockLLMError

SEED_USER = "Here is past 1 day stock price of 巨大 company.\n\nDate: 2025-01-03, Open: 141.5, High: 143.5, Low: 138.0, Close: 139.0, Capacity: 1447003\nPredict the next date price:\n"
SEED_ANSWER = "The next 1 day price is: Date:\n 2025-01-06, Open: 139.5, High: 144.5, Low: 137.5, Close: 143.0, Capacity: 1208884\n"


@pytest.fixture(scope="module")
def giant() -> pd.DataFrame:
    """巨大 (9921) from the bundled snapshot: TWSE's own figures, all nine columns."""
    return store.read_price_csv(store.snapshot_dir() / "9921.csv")


def rows(frame: pd.DataFrame, *dates: str) -> pd.DataFrame:
    return frame[frame["date"].isin(dates)].reset_index(drop=True)


def test_the_writeups_9921_example_is_reproduced_character_for_character(giant):
    turns = prompts.messages("巨大", rows(giant, "2025-01-03"), rows(giant, "2025-01-06"), prompts.FIELD_SETS["seed-example"])
    assert turns == [{"role": "user", "content": SEED_USER}, {"role": "assistant", "content": SEED_ANSWER}]


def test_the_example_is_also_produced_from_the_writeups_csv_with_an_index_column(tmp_path):
    path = tmp_path / "9921.csv"
    path.write_text(
        ",date,capacity,turnover,open,high,low,close,change,transaction\n"
        "0,2025-01-03,1447003,201909602,141.5,143.5,138.0,139.0,-1.5,2057\n"
        "1,2025-01-06,1208884,171999247,139.5,144.5,137.5,143.0,4.0,1864\n",
        "utf-8",
    )
    frame = store.read_price_csv(path)
    assert prompts.user_prompt("巨大", frame.iloc[:1], 1, "seed-example") == SEED_USER
    assert prompts.assistant_answer(frame.iloc[1:], "seed-example") == SEED_ANSWER


def test_seed_example_is_the_default_field_set():
    assert prompts.DEFAULT_FIELD_SET == "seed-example"
    assert prompts.FIELD_SETS["seed-example"] == ["date", "open", "high", "low", "close", "capacity"]


def test_multi_day_windows_write_one_line_per_day_and_plural_wording(giant):
    past, future = giant.iloc[140:145], giant.iloc[145:150]
    user = prompts.user_prompt("巨大", past, 5, "seed-example")
    answer = prompts.assistant_answer(future, "seed-example")
    assert user.startswith("Here is past 5 days stock price of 巨大 company.\n\nDate: ")
    assert user.endswith("\nPredict the next 5 days price:\n") and user.count("\nDate: ") == 5
    assert answer.startswith("The next 5 days price is: Date:\n ") and answer.count("\n ") == 5
    assert [line.split(",")[0].strip() for line in answer.splitlines()[1:]] == future["date"].tolist()


def test_inference_turn_is_the_training_user_turn_without_the_answer(giant):
    past, future = giant.iloc[140:145], giant.iloc[145:150]
    training = prompts.messages("巨大", past, future, "all")
    inference = prompts.messages("巨大", past, None, "all", future_days=5)
    assert inference == training[:1]
    with pytest.raises(StockLLMError, match="future_days"):
        prompts.messages("巨大", past, None, "all")


def test_context_goes_in_a_delimited_block_and_no_context_changes_nothing(giant):
    past = rows(giant, "2025-01-03")
    assert prompts.user_prompt("巨大", past, 1, "seed-example", context="") == SEED_USER
    assert prompts.user_prompt("巨大", past, 1, "seed-example", context="  \n") == SEED_USER
    with_news = prompts.user_prompt("巨大", past, 1, "seed-example", context="News up to 2025-01-03:\n- 巨大 raises prices")
    assert "\n<context>\nNews up to 2025-01-03:\n- 巨大 raises prices\n</context>\n\nPredict the next date price:\n" in with_news
    assert with_news.startswith(SEED_USER.split("Predict")[0])


@pytest.mark.parametrize("field_set", list(prompts.FIELD_SETS))
def test_rows_to_text_to_rows_round_trips_exactly_for_every_field_set(giant, field_set):
    fields = prompts.FIELD_SETS[field_set]
    future = giant.iloc[200:220][fields].reset_index(drop=True)
    parsed = prompts.parse_answer(prompts.assistant_answer(future, field_set), field_set, expected_days=20)
    assert parsed.ok and parsed.reason is None
    pd.testing.assert_frame_equal(parsed.rows, future)


def test_round_trip_keeps_small_prices_negative_changes_and_empty_fields():
    frame = store.normalise_prices(pd.DataFrame({
        "date": ["2025-01-02", "2025-01-03"], "capacity": [53594040, 1], "turnover": [1940182343, None],
        "open": [37.45, 9.99], "high": [37.55, 10.0], "low": [35.5, 9.01], "close": [35.5, 9.5], "change": [-2.15, 0.0], "transaction": [28766, 3],
    }))
    text = prompts.assistant_answer(frame, "all")
    assert "Open: 37.45" in text and "Change: -2.15" in text and "Turnover: , Open: 9.99" in text
    pd.testing.assert_frame_equal(prompts.parse_answer(text, "all").rows, frame)


def test_unknown_field_set_is_a_clear_error():
    with pytest.raises(StockLLMError, match="unknown field set 'ohlc'.*seed-example"):
        prompts.resolve_fields("ohlc")


# --- the tolerant parser -------------------------------------------------------------------------------

def test_parser_ignores_text_around_and_between_the_rows():
    text = "Sure! Based on the trend:\n\n" + SEED_ANSWER + "\nNote: this is not financial advice."
    parsed = prompts.parse_answer(text, "seed-example", expected_days=1)
    assert parsed.rows.iloc[0].tolist() == ["2025-01-06", 139.5, 144.5, 137.5, 143.0, 1208884]


def test_parser_sorts_swapped_days_and_keeps_the_first_of_a_repeated_day():
    text = (" 2025-01-07, Open: 143.0, High: 145.0, Low: 141.0, Close: 144.0, Capacity: 900000\n"
            " 2025-01-06, Open: 139.5, High: 144.5, Low: 137.5, Close: 143.0, Capacity: 1208884\n"
            " 2025-01-07, Open: 1.0, High: 1.0, Low: 1.0, Close: 1.0, Capacity: 1\n")
    parsed = prompts.parse_answer(text, "seed-example", expected_days=2)
    assert parsed.rows["date"].tolist() == ["2025-01-06", "2025-01-07"]
    assert parsed.rows["close"].tolist() == [143.0, 144.0]


def test_parser_reads_thousands_separators_other_spacing_case_and_date_styles():
    text = "2025/1/6 open=1,139.5 HIGH : 1,144.5 low 1,137.5 Close:1,143 volume: 1,208,884"
    parsed = prompts.parse_answer(text, "seed-example", expected_days=1)
    assert parsed.rows.iloc[0].tolist() == ["2025-01-06", 1139.5, 1144.5, 1137.5, 1143.0, 1208884]


def test_parser_reads_full_width_characters():
    parsed = prompts.parse_answer("２０２５－０１－０６，Ｏｐｅｎ：１３９．５，High：144.5，Low：137.5，Close：143，Capacity：1208884", "seed-example")
    assert parsed.ok and parsed.rows["open"].tolist() == [139.5]


def test_parser_reports_missing_days_and_keeps_what_it_found():
    parsed = prompts.parse_answer(SEED_ANSWER, "seed-example", expected_days=3)
    assert parsed.rows is None and not parsed.ok
    assert parsed.reason == "found 1 of 3 days"
    assert parsed.partial["date"].tolist() == ["2025-01-06"]


def test_parser_drops_a_row_lacking_a_field_and_says_which():
    text = SEED_ANSWER + " 2025-01-07, Open: 143.0, High: 145.0, Low: 141.0, Close: 144.0\n"
    parsed = prompts.parse_answer(text, "seed-example", expected_days=2)
    assert parsed.rows is None and parsed.reason == "found 1 of 2 days (2025-01-07 lacks capacity)"


def test_parser_cuts_extra_days_beyond_the_expected_number():
    text = SEED_ANSWER + " 2025-01-07, Open: 143.0, High: 145.0, Low: 141.0, Close: 144.0, Capacity: 900000\n"
    assert prompts.parse_answer(text, "seed-example", expected_days=1).rows["date"].tolist() == ["2025-01-06"]


@pytest.mark.parametrize("text, reason", [
    ("", "no date"),
    ("I cannot predict stock prices.", "no date"),
    ("2025-01-06 will be a good day", "no complete day row"),
    ("2025-13-45, Open: 1, High: 1, Low: 1, Close: 1, Capacity: 1", "no complete day row"),
])
def test_parser_fails_with_a_reason_instead_of_raising(text, reason):
    parsed = prompts.parse_answer(text, "seed-example", expected_days=1)
    assert parsed.rows is None and reason in parsed.reason


def test_a_number_beyond_any_market_figure_makes_its_day_unreadable_not_a_crash():
    answer = ("The next 1 day price is: Date:\n 2025-01-06, Open: 139.5, High: 144.5, Low: 137.5, Close: 143.0, "
              "Capacity: 99999999999999999999999999\n")
    parsed = prompts.parse_answer(answer, "seed-example", expected_days=1)
    assert parsed.rows is None and "capacity" in parsed.reason and "out of range" in parsed.reason
