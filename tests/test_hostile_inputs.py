"""Every subcommand against bad input: one line ``error: …``, exit status 2, and no file left behind.

The table is what a careless user (or an attacker) types: malformed and impossible dates, zero, negative,
NaN and astronomically large numbers, files where folders belong and folders where files belong, corrupt
JSON and CSV files, unknown codes, busy ports. The CLI runs in-process (``stockllm.cli.main``), from a
scratch working directory, so default output paths would land where the test can see them.
"""

from __future__ import annotations

import shlex
import socket
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from stockllm import store
from stockllm.cli import main
from stockllm.trading.ledger import Ledger

START = "2025-03-03"


def _corrupt_prices(root: Path, name: str, change) -> Path:
    """A data dir whose 2330 prices have one impossible row on ``START``'s next trading day (2025-03-04);
    ``ex-<name>.sqlite`` is an exchange over it created before the row went bad."""
    data = root / name
    store.install_snapshot(data, ["2330"])
    Ledger(root / f"ex-{name}.sqlite", data, START)
    frame = store.read_prices(data, "2330")
    change(frame, frame.index[frame["date"] == "2025-03-04"][0])
    frame.to_csv(store.prices_path(data, "2330"), index=False)
    return data


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("hostile")
    data = root / "data"
    store.install_snapshot(data, ["2330", "2317"])
    Ledger(root / "ex.sqlite", data, START).add_user("alice", "alice-pw", 1_000_000)
    (root / "a_file.txt").write_text("not a folder\n")
    (root / "not.sqlite").write_text("not a database\n" * 100)
    (root / "bad.json").write_text("{bad")
    (root / "deep.json").write_text("[" * 100_000)
    (root / "numbers.json").write_text("[1, 2, 3]")
    (root / "object.json").write_text('{"code": "2330"}')
    for name, text in [("corrupt", "{bad"), ("listed", "[1]"), ("baseless", '{"max_seq_length": 64}')]:
        (root / f"model-{name}").mkdir()
        (root / f"model-{name}" / "training_info.json").write_text(text)
    (root / "empty-data" / "prices").mkdir(parents=True)
    (root / "a_folder").mkdir()
    _corrupt_prices(root, "negative", lambda f, i: f.__setitem__("open", f["open"].where(f.index != i, -5.0)))
    _corrupt_prices(root, "zero", lambda f, i: f.__setitem__("close", f["close"].where(f.index != i, 0.0)))
    _corrupt_prices(root, "infinite", lambda f, i: f.__setitem__("high", f["high"].where(f.index != i, float("inf"))))
    _corrupt_prices(root, "inverted", lambda f, i: f.__setitem__("low", f["low"].where(f.index != i, f["high"][i] + 10)))
    _corrupt_prices(root, "baddate", lambda f, i: f.__setitem__("date", f["date"].where(f.index != i, "2025-02-30")))
    (root / "cwd").mkdir()
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    yield SimpleNamespace(root=root, busy_port=busy.getsockname()[1])
    busy.close()


# (arguments with {root} and {busy_port} placeholders, words the error line must contain)
BAD_INPUTS = [
    # companies
    ("companies --company-list-file .", "is not a file"),
    ("companies --company-list-file {root}/missing.json", "does not exist"),
    ("companies --company-list-file {root}/bad.json", "not valid UTF-8 JSON"),
    ("companies --company-list-file {root}/object.json", "non-empty JSON list"),
    ("companies --choose-stock -1", "--choose-stock"),
    ("companies --random-state many", "--random-state"),
    # fetch: years the exchanges never served would mean hours of requests
    ("fetch --year -5", "a year the exchanges serve"),
    ("fetch --year 0", "a year the exchanges serve"),
    ("fetch --year 1990", "a year the exchanges serve"),
    ("fetch --year 2999", "a year the exchanges serve"),
    ("fetch --month 13", "a month"),
    ("fetch --offline --data-dir {root}/a_file.txt", "is a file"),
    ("fetch --offline --data-dir {root}/a_file.txt/sub", "which is a file"),
    ("fetch --offline --codes 9999 --data-dir {root}/new-data", "unknown stock code '9999'"),
    # build
    ("build --data-dir {root}/data --codes 2330 --out {root}/a_file.txt", "is a file"),
    ("build --data-dir {root}/data --codes 2330 --out {root}/data", "not part of a dataset"),
    ("build --data-dir {root}/data --codes 2330 --windows 5-5", "invalid window"),
    ("build --data-dir {root}/data --codes 2330 --stride 0", "--stride"),
    ("build --data-dir {root}/data --codes 2330 --val-start 2025-13-01", "not a calendar date"),
    ("build --data-dir {root}/data --codes 2330 --val-frac nan", "finite"),
    ("build --data-dir {root}/data --codes 2330 --max-seq-length 0", "--max-seq-length"),
    ("build --data-dir {root}/empty-data --codes 2330", "fetch"),
    # train: refused while parsing, before any model is loaded
    ("train --data-dir {root}/data --rank 0", "--rank"),
    ("train --data-dir {root}/data --learning-rate nan", "finite"),
    ("train --data-dir {root}/data --batch-size -4", "--batch-size"),
    ("train --data-dir {root}/data --model-dir {root}/a_file.txt", "is a file"),
    # predict: every problem is said before the model loads
    ("predict --data-dir {root}/data --code 9999 --model-dir {root}/model-corrupt", "unknown stock code '9999'"),
    ("predict --data-dir {root}/data --model-dir {root}/model-corrupt", "not valid JSON"),
    ("predict --data-dir {root}/data --model-dir {root}/model-listed", "holds a JSON list"),
    ("predict --data-dir {root}/data --model-dir {root}/model-baseless", "names no base_model"),
    ("predict --data-dir {root}/data --model-dir {root}/no-model", "not a trained model dir"),
    ("predict --data-dir {root}/data --past 0", "--past"),
    ("predict --data-dir {root}/data --as-of 2025/03/03", "not a date"),
    ("predict --data-dir {root}/data --chart {root}/a_folder", "is a folder"),
    # evaluate
    ("evaluate --data-dir {root}/data --codes 2330 --models random_walk --report {root}/a_file.txt", "is a file"),
    ("evaluate --data-dir {root}/data --codes 2330 --stride 0", "--stride"),
    ("evaluate --data-dir {root}/data --codes 2330 --start garbage", "not a date"),
    # app and demo
    ("app --port 99999", "--port"),
    ("demo --steps 0", "--steps"),
    ("demo --learning-rate -1", "--learning-rate"),
    ("demo --out-dir {root}/a_file.txt", "is a file"),
    # backtest
    ("backtest --data-dir {root}/data --codes 2330 --start 2025/03/01 --end 2025-04-01", "not a date YYYY-MM-DD"),
    ("backtest --data-dir {root}/data --codes 2330 --start 2025-02-30 --end 2025-04-01", "not a calendar date"),
    ("backtest --data-dir {root}/data --codes 2330 --start 2025-03-03 --end 2025-04-01 --margin nan", "finite"),
    ("backtest --data-dir {root}/data --codes 2330 --start 2025-03-03 --end 2025-04-01 --margin inf", "finite"),
    ("backtest --data-dir {root}/data --codes 2330 --start 2025-03-03 --end 2025-04-01 --cash 0", "--cash"),
    ("backtest --data-dir {root}/data --codes 2330 --start 2025-03-03 --end 2025-04-01 --cash 1e23", "--cash"),
    ("backtest --data-dir {root}/data --codes 2330 --start 2025-03-03 --end 2025-04-01 --horizon 0", "--horizon"),
    ("backtest --data-dir {root}/data --codes 2330 --start 2025-03-03 --end 2025-04-01 --max-position 2", "--max-position"),
    ("backtest --data-dir {root}/data --codes 2330 --start 2025-03-03 --end 2025-04-01 --report {root}/a_file.txt", "is a file"),
    ("backtest --data-dir {root}/data --codes 9999 --start 2025-03-03 --end 2025-04-01", "unknown stock code"),
    ("backtest --data-dir {root}/negative --codes 2330 --start 2025-03-03 --end 2025-04-01", "2025-03-04 open -5.0 must be a positive finite price"),
    ("backtest --data-dir {root}/zero --codes 2330 --start 2025-03-03 --end 2025-04-01", "2025-03-04 close 0.0 must be a positive"),
    ("backtest --data-dir {root}/infinite --codes 2330 --start 2025-03-03 --end 2025-04-01", "2025-03-04 high inf must be a positive finite"),
    ("backtest --data-dir {root}/inverted --codes 2330 --start 2025-03-03 --end 2025-04-01", "2025-03-04 high"),
    ("backtest --data-dir {root}/baddate --codes 2330 --start 2025-03-03 --end 2025-04-01", "'2025-02-30' is not a date"),
    # trade
    ("trade --data-dir {root}/data --codes 2330 --margin nan", "finite"),
    ("trade --data-dir {root}/data --codes 2330 --order-log {root}/a_folder", "is a folder"),
    # exchange
    ("exchange init --data-dir {root}/data --db {root}/new.sqlite --date garbage", "not a date"),
    ("exchange init --data-dir {root}/data --db {root}/new.sqlite --date 2030-01-02", "outside the stored prices"),
    ("exchange init --data-dir {root}/data --db {root}/new.sqlite --date 1990-01-02", "outside the stored prices"),
    ("exchange init --data-dir {root}/empty-data --db {root}/new.sqlite", "no price data"),
    ("exchange init --data-dir {root}/data --db {root}/ex.sqlite", "already exists"),
    ("exchange init --data-dir {root}/data --db {root}/a_folder", "is a folder"),
    ("exchange advance --data-dir {root}/data --db {root}/ex.sqlite --days 0", "--days"),
    ("exchange advance --data-dir {root}/data --db {root}/ex.sqlite --days -3", "--days"),
    ("exchange advance --data-dir {root}/data --db {root}/ex.sqlite --to garbage", "not a date"),
    ("exchange advance --data-dir {root}/data --db {root}/ex.sqlite --to 2025-03-03", "already"),
    ("exchange advance --data-dir {root}/data --db {root}/ex.sqlite --to 2030-01-02", "no price data"),
    ("exchange advance --data-dir {root}/negative --db {root}/ex-negative.sqlite", "2025-03-04 open -5.0"),
    ("exchange status --data-dir {root}/data --db {root}/not.sqlite", "is not an exchange database"),
    ("exchange status --data-dir {root}/data --db {root}/missing.sqlite", "no exchange database"),
    ("exchange add-user --data-dir {root}/data --db {root}/ex.sqlite --account bob --cash 1e23", "--cash"),
    ("exchange add-user --data-dir {root}/data --db {root}/ex.sqlite --account bob --cash 100000000000000000000000", "--cash"),
    ("exchange add-user --data-dir {root}/data --db {root}/ex.sqlite --account bob --cash -1", "--cash"),
    ("exchange add-user --data-dir {root}/data --db {root}/ex.sqlite --account 'bob smith'", "account 'bob smith'"),
    ("exchange add-user --data-dir {root}/data --db {root}/ex.sqlite --account alice", "already exists"),
    ("exchange serve --data-dir {root}/data --db {root}/ex.sqlite --port 99999", "--port"),
    ("exchange serve --data-dir {root}/data --db {root}/ex.sqlite --port 0", "--port"),
    ("exchange serve --data-dir {root}/data --db {root}/ex.sqlite --port {busy_port}", "cannot listen on 127.0.0.1"),
    # the parser itself
    ("nonsense", "invalid choice"),
    ("exchange", "required"),
]


def _files(root: Path) -> set[Path]:
    """Files under ``root``, without SQLite's -wal/-shm companions (they come and go with connections)."""
    return {p for p in root.rglob("*") if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


@pytest.mark.parametrize("arguments, words", BAD_INPUTS, ids=[a for a, _ in BAD_INPUTS])
def test_bad_input_is_one_error_line_exit_2_and_leaves_no_file(world, arguments, words, capsys, monkeypatch):
    monkeypatch.chdir(world.root / "cwd")
    monkeypatch.setenv("STOCK_API_PASSWORD", "bob-pw")
    argv = shlex.split(arguments.format(root=world.root, busy_port=world.busy_port))
    before = _files(world.root)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse refuses while parsing
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.splitlines()[-1] == errors[0] and "Traceback" not in err, err
    assert words in errors[0]
    assert _files(world.root) == before, "files left behind"


def test_a_corrupt_row_names_file_date_and_field(world):
    with pytest.raises(Exception) as caught:
        store.read_prices(world.root / "negative", "2330")
    assert str(caught.value) == (f"{world.root / 'negative' / 'prices' / '2330.csv'}: 2025-03-04 open -5.0 must be a positive finite price; "
                                 "correct or delete that row (or re-run `stockllm fetch`)")


def test_the_bundled_snapshot_passes_the_row_checks():
    for code in store.snapshot_codes():
        frame = store.read_price_csv(store.snapshot_dir() / f"{code}.csv")
        assert store.price_row_problem(frame) is None and len(frame) > 100
