"""The dataset builder: the write-up's example, point-in-time news, leak-free splits, bad input never crashes."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from stockllm import dataset, prompts, store
from stockllm.cli import build_parser, main
from stockllm.dataset import DatasetSpec, build_dataset, inference_messages, parse_windows
from stockllm.errors import StockLLMError
from stockllm.universe import resolve_code

SEED_USER = "Here is past 1 day stock price of 巨大 company.\n\nDate: 2025-01-03, Open: 141.5, High: 143.5, Low: 138.0, Close: 139.0, Capacity: 1447003\nPredict the next date price:\n"
SEED_ANSWER = "The next 1 day price is: Date:\n 2025-01-06, Open: 139.5, High: 144.5, Low: 137.5, Close: 143.0, Capacity: 1208884\n"
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def snapshot(tmp_path: Path, *codes: str) -> Path:
    target = tmp_path / "data"
    store.install_snapshot(target, list(codes))
    return target


def examples(built) -> list[tuple[str, dict]]:
    return [(split, e) for split, items in built.splits.items() for e in items]


def input_dates(example: dict) -> list[str]:
    user = example["messages"][0]["content"]
    return re.findall(r"^Date: (\d{4}-\d{2}-\d{2})", user, flags=re.M)


def target_dates(example: dict) -> list[str]:
    return re.findall(r"^ (\d{4}-\d{2}-\d{2}),", example["messages"][1]["content"], flags=re.M)


def write_csv(data_dir: Path, code: str, frame: pd.DataFrame) -> None:
    path = store.prices_path(data_dir, code)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


@pytest.fixture(scope="module")
def two_companies(tmp_path_factory) -> Path:
    """巨大 (TWSE, all nine fields) and 中光電 (TPEx, Yahoo OHLCV only) from the snapshot."""
    return snapshot(tmp_path_factory.mktemp("two"), "9921", "5371")


# --- the write-up's example ------------------------------------------------------------------------

def test_the_9921_example_is_a_training_example_built_from_the_price_csv(two_companies):
    built = build_dataset(two_companies, ["9921"], DatasetSpec(windows=[(1, 1)]))
    [example] = [e for _, e in examples(built) if e["origin"] == "2025-01-03"]
    assert example["messages"] == [{"role": "user", "content": SEED_USER}, {"role": "assistant", "content": SEED_ANSWER}]
    assert example["code"] == "9921" and example["window"] == "1:1"


def test_inference_messages_are_the_training_user_turn(two_companies):
    spec = DatasetSpec(windows=[(5, 5)], fields="all")
    built = build_dataset(two_companies, ["9921"], spec)
    example = next(e for _, e in examples(built) if e["origin"] == "2025-01-03")
    assert inference_messages(two_companies, "9921", 5, 5, spec, as_of="2025-01-03") == example["messages"][:1]
    assert inference_messages(two_companies, "9921", 1, 1, DatasetSpec(), as_of="2025-01-04") == [{"role": "user", "content": SEED_USER}]


@pytest.mark.parametrize("field_set", ["seed-example", "all", "no-capacity", "ohlc-transaction"])
def test_every_answer_parses_back_to_the_stored_rows(two_companies, field_set):
    built = build_dataset(two_companies, ["9921"], DatasetSpec(windows=[(5, 5)], fields=field_set, stride=50))
    stored = store.read_prices(two_companies, "9921").set_index("date")
    for _, example in examples(built):
        parsed = prompts.parse_answer(example["messages"][1]["content"], field_set, expected_days=5)
        expected = stored.loc[parsed.rows["date"], prompts.FIELD_SETS[field_set][1:]].reset_index()
        pd.testing.assert_frame_equal(parsed.rows, expected, check_dtype=False)


# --- windows, stride, field sets ---------------------------------------------------------------------

def test_multi_day_windows_show_past_and_next_days(two_companies):
    built = build_dataset(two_companies, ["9921"], DatasetSpec(windows=[(20, 5)]))
    _, example = examples(built)[0]
    assert example["messages"][0]["content"].startswith("Here is past 20 days stock price of 巨大 company.")
    assert len(input_dates(example)) == 20 and len(target_dates(example)) == 5
    assert input_dates(example)[-1] == example["origin"] < target_dates(example)[0]


def test_stride_thins_the_sliding_windows(two_companies):
    full = build_dataset(two_companies, ["9921"], DatasetSpec(windows=[(1, 1)], stride=1))
    thin = build_dataset(two_companies, ["9921"], DatasetSpec(windows=[(1, 1)], stride=5))
    assert 4 * sum(thin.metadata["totals"].values()) < sum(full.metadata["totals"].values())


def test_companies_lacking_a_field_sets_columns_are_skipped_and_listed(two_companies):
    built = build_dataset(two_companies, ["9921", "5371"], DatasetSpec(windows=[(1, 1)], fields="all"))
    assert built.skipped == [{"code": "5371", "name": "中光電", "reason": "no turnover, change, transaction values"}]
    assert {e["code"] for _, e in examples(built)} == {"9921"}


def test_an_empty_data_dir_is_refused_with_the_command_that_fills_it(tmp_path):
    with pytest.raises(StockLLMError, match=r"no stored prices for these companies in .*run `stockllm fetch --data-dir"):
        build_dataset(tmp_path, ["2330"], DatasetSpec(windows=[(1, 1)]))


def test_a_build_where_no_company_has_the_columns_is_refused_naming_them(two_companies):
    with pytest.raises(StockLLMError, match="no company can be used with --fields ohlc-transaction .*no transaction values"):
        build_dataset(two_companies, ["5371"], DatasetSpec(fields="ohlc-transaction"))


@pytest.mark.parametrize("text, message", [
    ("1:1,5", "invalid window '5'"),
    ("a:b", "invalid window 'a:b'"),
    ("0:1", "at least 1 trading day"),
    ("5:5,5:5", "given twice"),
    ("", "invalid window ''"),
])
def test_bad_windows_are_clear_errors(text, message):
    with pytest.raises(StockLLMError, match=message):
        parse_windows(text)


def test_windows_parse_and_the_spec_round_trips_through_json():
    assert parse_windows("1:1,5:5,20:5,60:20") == [(1, 1), (5, 5), (20, 5), (60, 20)]
    spec = DatasetSpec(windows=[(5, 5)], fields="all", context="news+signals", test_start="2026-01-02")
    assert DatasetSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_spec_from_args_reads_the_build_options():
    args = build_parser().parse_args(["build", "--windows", "5:5,20:5", "--fields", "no-capacity", "--context", "signals", "--stride", "3", "--gap", "7", "--max-seq-length", "4096"])
    spec = dataset.spec_from_args(args)
    assert (spec.windows, spec.fields, spec.context, spec.stride, spec.embargo, spec.max_seq_length) == ([(5, 5), (20, 5)], "no-capacity", "signals", 3, 7, 4096)


@pytest.mark.parametrize("changes, message", [
    ({"fields": "ohlc"}, "unknown field set"),
    ({"context": "rag"}, "unknown context 'rag'"),
    ({"stride": 0}, "--stride must be at least 1"),
    ({"val_frac": 0.6, "test_frac": 0.5}, "sum below 1"),
    ({"test_start": "2026/01/02"}, "--test-start '2026/01/02' is not a date"),
    ({"val_start": "2026-02-01", "test_start": "2026-01-02"}, "validation must come before test"),
])
def test_bad_spec_settings_are_clear_errors(changes, message):
    with pytest.raises(StockLLMError, match=message):
        DatasetSpec(**changes)


# --- splits ---------------------------------------------------------------------------------------

def test_no_test_target_date_appears_in_train_or_validation(tmp_path):
    data_dir = snapshot(tmp_path, "9921", "2330", "5371")
    built = build_dataset(data_dir, ["9921", "2330", "5371"], DatasetSpec())
    days = {split: {"inputs": set(), "targets": set()} for split in dataset.SPLITS}
    for split, example in examples(built):
        days[split]["inputs"].update(input_dates(example))
        days[split]["targets"].update(target_dates(example))
    assert all(days[s]["targets"] for s in dataset.SPLITS)
    test_targets = days["test"]["targets"]
    for earlier in ("train", "validation"):
        assert not test_targets & (days[earlier]["inputs"] | days[earlier]["targets"])
    assert not days["validation"]["targets"] & (days["train"]["inputs"] | days["train"]["targets"])
    assert max(days["train"]["targets"]) < built.metadata["split_starts"]["validation"] <= min(days["validation"]["targets"])
    assert max(days["validation"]["targets"]) < built.metadata["split_starts"]["test"] <= min(test_targets)


def test_no_target_day_of_one_split_is_an_input_of_another_and_the_gap_holds(two_companies):
    built = build_dataset(two_companies, ["9921"], DatasetSpec(windows=[(1, 1), (20, 5)], gap=10))
    dates = store.read_prices(two_companies, "9921")["date"].tolist()
    spans = {}
    for split, example in examples(built):
        for day in target_dates(example):
            spans.setdefault(split, set()).add(day)
    for split, example in examples(built):
        for other, targets in spans.items():
            if other != split:
                assert not targets & set(input_dates(example) + target_dates(example))
    last_train, first_val = max(spans["train"]), min(spans["validation"])
    assert dates.index(first_val) - dates.index(last_train) > 10


def test_split_dates_can_be_given_and_counts_are_reported(two_companies):
    spec = DatasetSpec(windows=[(1, 1), (5, 5)], val_start="2025-06-02", test_start="2025-10-01")
    built = build_dataset(two_companies, ["9921"], spec)
    meta = built.metadata
    assert meta["split_starts"] == {"validation": "2025-06-02", "test": "2025-10-01", "gap_rows": 5}
    assert meta["date_ranges"]["test"]["first"] >= "2025-09-01" and meta["date_ranges"]["train"]["last"] < "2025-06-02"
    assert sum(meta["counts"]["train"].values()) == len(built.splits["train"]) > 0
    table = built.summary()
    assert table.splitlines()[0].split() == ["window", "train", "validation", "test", "skipped", "unused"]
    assert table.splitlines()[1].startswith("1:1")


# --- bad input --------------------------------------------------------------------------------------

@pytest.fixture
def giant_rows() -> pd.DataFrame:
    return store.read_price_csv(store.snapshot_dir() / "9921.csv").iloc[:60].copy()


def test_missing_days_skip_the_windows_over_the_gap(tmp_path, giant_rows):
    write_csv(tmp_path, "9921", giant_rows.drop(index=range(30, 33)))  # three trading days lost
    built = build_dataset(tmp_path, ["9921"], DatasetSpec(windows=[(5, 5)], val_frac=0, test_frac=0))
    assert built.metadata["skipped_windows"]["5:5"]["missing_days"] == 9
    assert any("3 trading day(s) missing in 1 gap(s), first after " + giant_rows["date"].iloc[29] in n for n in built.metadata["notes"])
    for _, example in examples(built):
        assert not (input_dates(example)[0] <= giant_rows["date"].iloc[29] < target_dates(example)[-1])


def test_halted_days_with_empty_prices_skip_their_windows(tmp_path, giant_rows):
    giant_rows.loc[20, ["open", "high", "low", "close"]] = None
    write_csv(tmp_path, "9921", giant_rows)
    built = build_dataset(tmp_path, ["9921"], DatasetSpec(windows=[(1, 1), (5, 5)], val_frac=0, test_frac=0))
    assert built.metadata["skipped_windows"] == {"1:1": {"missing_values": 2}, "5:5": {"missing_values": 10}}
    halted = giant_rows["date"].iloc[20]
    assert all(halted not in json.dumps(e) for _, e in examples(built))


def test_duplicate_dates_are_reported_and_their_windows_skipped(tmp_path, giant_rows):
    duplicated = pd.concat([giant_rows, giant_rows.iloc[[10]].assign(close=1.0)]).sort_values("date")
    write_csv(tmp_path, "9921", duplicated)
    built = build_dataset(tmp_path, ["9921"], DatasetSpec(windows=[(1, 1)], val_frac=0, test_frac=0))
    day = giant_rows["date"].iloc[10]
    assert any(f"duplicate dates in the CSV ({day})" in n for n in built.metadata["notes"])
    assert built.metadata["skipped_windows"]["1:1"] == {"missing_values": 2}
    assert all(day not in json.dumps(e) for _, e in examples(built))


def test_fewer_rows_than_a_window_needs_skips_that_window_only(tmp_path, giant_rows):
    write_csv(tmp_path, "9921", giant_rows.iloc[:8])
    built = build_dataset(tmp_path, ["9921"], DatasetSpec(val_frac=0, test_frac=0))
    assert built.metadata["counts"]["train"] == {"1:1": 7, "5:5": 0, "20:5": 0, "60:20": 0}
    assert built.metadata["skipped_windows"]["20:5"] == {"too_few_rows": 1}
    assert any("8 rows, fewer than the 25 window 20:5 needs" in n for n in built.metadata["notes"])


def test_missing_or_unreadable_price_files_skip_the_company(tmp_path, giant_rows):
    write_csv(tmp_path, "9921", giant_rows)
    store.prices_path(tmp_path, "2330").write_text("date,open\nnot-a-date,1\n", "utf-8")
    built = build_dataset(tmp_path, ["9921", "2330", "2317"], DatasetSpec(windows=[(1, 1)], val_frac=0, test_frac=0))
    reasons = {s["code"]: s["reason"] for s in built.skipped}
    assert reasons["2317"] == "no price file" and reasons["2330"].startswith("unreadable price file")


def test_nothing_to_build_is_a_clear_error(tmp_path, giant_rows):
    write_csv(tmp_path, "9921", giant_rows.iloc[:3])
    with pytest.raises(StockLLMError, match="no examples could be built"):
        build_dataset(tmp_path, ["9921"], DatasetSpec(windows=[(5, 5)]))


# --- context ----------------------------------------------------------------------------------------

def article(published: str, title: str, description: str = "") -> dict:
    return {"publishedAt": published, "title": title, "description": description, "source": "經濟日報", "url": f"https://example.com/{published}"}


@pytest.fixture
def news_dir(tmp_path, giant_rows) -> Path:
    write_csv(tmp_path, "9921", giant_rows)
    day = giant_rows["date"].iloc[40]  # D for the checks below
    store.write_news(tmp_path, "9921", {
        "name_zh": "巨大", "name_en": "Giant", "code": "9921",
        "news_zh": [
            article(f"{day}T15:59:00Z", "巨大 前一日晚間公告"),  # 23:59 Taipei on D: known by D's end
            article(f"{day}T16:00:00Z", "巨大 隔日凌晨消息"),  # 00:00 Taipei on D+1: must never be D's news
            article("2024-08-01T02:00:00Z", "自行車產業 展望", "巨大 與美利達"),
            article("2024-07-20T02:00:00Z", "巨大 七月營收"),
            article("2024-06-01T02:00:00Z", "其他公司 新聞"),
        ],
        "news_en": [article("2024-07-25T02:00:00Z", "Giant Manufacturing ships e-bikes")],
    })
    return tmp_path


def headline_dates(example: dict) -> list[str]:
    return re.findall(r"^- (\d{4}-\d{2}-\d{2}) ", example["messages"][0]["content"], flags=re.M)


def test_no_news_item_published_after_the_last_input_day_is_in_the_prompt(news_dir, giant_rows):
    spec = DatasetSpec(windows=[(1, 1), (5, 5)], context="news", val_frac=0, test_frac=0, news_lookback_days=400)
    built = build_dataset(news_dir, ["9921"], spec)
    for _, example in examples(built):
        assert all(day <= example["origin"] for day in headline_dates(example))
    day = giant_rows["date"].iloc[40]
    at_d = next(e for _, e in examples(built) if e["origin"] == day)["messages"][0]["content"]
    assert "前一日晚間公告" in at_d and "隔日凌晨消息" not in at_d
    after = next(e for _, e in examples(built) if e["origin"] > day)["messages"][0]["content"]
    assert "隔日凌晨消息" in after


def test_news_is_ranked_by_mention_then_recency_inside_a_delimited_block(news_dir, giant_rows):
    spec = DatasetSpec(windows=[(1, 1)], context="news", top_k_news=3, val_frac=0, test_frac=0)
    user = inference_messages(news_dir, "9921", 1, 1, spec, as_of="2024-08-01")[0]["content"]
    block = user[user.index("<context>"): user.index("</context>")]
    assert block.splitlines()[1:] == [  # named in the title beats named only in the description, then newest first
        "News up to 2024-08-01 (most relevant first):",
        "- 2024-08-01 巨大 前一日晚間公告 (經濟日報)",
        "- 2024-07-25 Giant Manufacturing ships e-bikes (經濟日報)",
        "- 2024-07-20 巨大 七月營收 (經濟日報)",
    ]
    assert user.endswith("</context>\n\nPredict the next date price:\n")


def test_headlines_are_cut_to_fit_the_max_sequence_length(news_dir):
    generous = DatasetSpec(windows=[(1, 1)], context="news", val_frac=0, test_frac=0, news_lookback_days=400)
    tight = DatasetSpec(windows=[(1, 1)], context="news", val_frac=0, test_frac=0, news_lookback_days=400, max_seq_length=400)
    many = inference_messages(news_dir, "9921", 1, 1, generous)[0]["content"]
    few = inference_messages(news_dir, "9921", 1, 1, tight)[0]["content"]
    assert many.count("\n- ") == 5 and 0 < few.count("\n- ") < 5
    for _, example in examples(build_dataset(news_dir, ["9921"], tight)):
        text = "".join(m["content"] for m in example["messages"])
        assert dataset.approx_tokens(text) + dataset.TEMPLATE_OVERHEAD_TOKENS <= 400


def test_a_tokenizer_can_replace_the_character_estimate(news_dir):
    spec = DatasetSpec(windows=[(1, 1)], context="news", val_frac=0, test_frac=0, news_lookback_days=400, max_seq_length=200)
    words = lambda text: len(text.split())  # a stand-in tokenizer: far fewer tokens than characters
    built = build_dataset(news_dir, ["9921"], spec, count_tokens=words)
    assert sum(built.metadata["totals"].values()) == 59 and built.metadata["token_count"] == "tokenizer"
    assert "\n- " in built.splits["train"][-1]["messages"][0]["content"]


def test_signals_context_is_twstocks_best_four_point_of_day_d(news_dir, giant_rows):
    spec = DatasetSpec(windows=[(5, 5)], context="news+signals", val_frac=0, test_frac=0)
    user = inference_messages(news_dir, "9921", 5, 5, spec, as_of=giant_rows["date"].iloc[40])[0]["content"]
    assert re.search(r"\nBestFourPoint on " + giant_rows["date"].iloc[40] + r": (buy|sell|no signal)", user)
    early = inference_messages(news_dir, "9921", 1, 1, DatasetSpec(context="signals"), as_of=giant_rows["date"].iloc[3])[0]["content"]
    assert "BestFourPoint on " + giant_rows["date"].iloc[3] + ": not enough history" in early


def test_missing_news_says_none_and_explicit_context_text_wins(two_companies):
    spec = DatasetSpec(windows=[(1, 1)], context="news")
    user = inference_messages(two_companies, "9921", 1, 1, spec, as_of="2025-01-03")[0]["content"]
    assert "<context>\nNews up to 2025-01-03: none\n</context>" in user
    assert inference_messages(two_companies, "9921", 1, 1, spec, as_of="2025-01-03", context_text="")[0]["content"] == SEED_USER


def test_inference_refuses_windows_over_bad_days(tmp_path, giant_rows):
    giant_rows.loc[59, "close"] = None
    write_csv(tmp_path, "9921", giant_rows)
    with pytest.raises(StockLLMError, match="has days with empty values"):
        inference_messages(tmp_path, "9921", 5, 5, DatasetSpec())
    with pytest.raises(StockLLMError, match="fewer than past=80"):
        inference_messages(tmp_path, "9921", 80, 5, DatasetSpec(), as_of=giant_rows["date"].iloc[58])


# --- output ---------------------------------------------------------------------------------------

def test_build_writes_jsonl_splits_and_metadata_loadable_with_datasets(two_companies, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["build", "--data-dir", str(two_companies), "--codes", "9921", "5371", "--windows", "1:1,5:5", "--out", str(out)])
    assert code == 0
    err = capsys.readouterr().err
    assert "window" in err and "total" in err and "wrote" in err
    meta = json.loads((out / "metadata.json").read_text("utf-8"))
    assert meta["windows"] == ["1:1", "5:5"] and meta["fields"] == prompts.FIELD_SETS["seed-example"] and meta["companies"] == ["9921", "5371"]
    first = json.loads((out / "train.jsonl").read_text("utf-8").splitlines()[0])
    assert set(first) == {"messages", "code", "origin", "window"}
    loaded = dataset.load_written(out, cache_dir=tmp_path / "hf")
    assert {s: len(loaded[s]) for s in loaded} == meta["totals"]
    assert loaded["train"][0]["messages"][0]["role"] == "user"


def test_empty_splits_get_no_file_so_datasets_can_load_the_rest(two_companies, tmp_path):
    out = tmp_path / "out"
    (out).mkdir()
    (out / "test.jsonl").write_text("stale\n", "utf-8")
    built = build_dataset(two_companies, ["9921"], DatasetSpec(windows=[(1, 1)], test_frac=0))
    dataset.write_dataset(built, out)
    assert not (out / "test.jsonl").exists()
    assert set(dataset.load_written(out, cache_dir=tmp_path / "hf")) == {"train", "validation"}


def test_a_folder_mixing_two_builds_is_refused_not_loaded(two_companies, tmp_path):
    """What a build killed half-way used to leave: a new train.jsonl beside the old metadata and splits."""
    old, new = tmp_path / "old", tmp_path / "new"
    dataset.write_dataset(build_dataset(two_companies, ["9921"], DatasetSpec(windows=[(1, 1)])), old)
    dataset.write_dataset(build_dataset(two_companies, ["9921", "5371"], DatasetSpec(windows=[(1, 1)])), new)
    (old / "train.jsonl").write_bytes((new / "train.jsonl").read_bytes())
    with pytest.raises(StockLLMError, match="train.jsonl is not the file .*metadata.json describes"):
        dataset.load_written(old, cache_dir=tmp_path / "hf")


def test_a_rebuild_swaps_the_whole_folder_and_removes_what_killed_builds_left(two_companies, tmp_path):
    out = tmp_path / "out"
    dataset.write_dataset(build_dataset(two_companies, ["9921"], DatasetSpec(windows=[(1, 1)])), out)
    killed = tmp_path / ".out.1a2b3c4d.tmp"  # the staging folder of a build killed with -9
    killed.mkdir()
    (killed / "train.jsonl").write_text("half a line")
    (out / ".train.jsonl.x1y2.tmp").write_text("half a file")  # an older version's per-file leftover
    built = build_dataset(two_companies, ["9921", "5371"], DatasetSpec(windows=[(1, 1)], test_frac=0))
    dataset.write_dataset(built, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "train.jsonl", "validation.jsonl"]
    assert json.loads((out / "metadata.json").read_text("utf-8"))["companies"] == ["9921", "5371"]


def test_build_refuses_an_out_folder_holding_other_files_before_building(two_companies, tmp_path, capsys):
    (tmp_path / "outputs" / "model").mkdir(parents=True)
    assert main(["build", "--data-dir", str(two_companies), "--codes", "9921", "--out", str(tmp_path / "outputs")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: ")
    assert (tmp_path / "outputs" / "model").is_dir()


def test_build_cli_reports_bad_options_as_one_line(two_companies, capsys):
    assert main(["build", "--data-dir", str(two_companies), "--windows", "5-5"]) == 2
    assert capsys.readouterr().err.strip() == "error: invalid window '5-5': write PAST:FUTURE in trading days, e.g. --windows 1:1,5:5,20:5,60:20"
