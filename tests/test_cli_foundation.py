"""The command line: write-up arguments, companies listing, offline fetch, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

from stockllm.cli import main as stockllm_main

ROOT = Path(__file__).resolve().parents[1]
WRITEUP_FLAGS = [
    "--train", "--data-dir", "--company-list-file", "--year", "--month", "--choose-stock", "--model-name",
    "--max-seq-length", "--load_in_4bit", "--load_in_8bit", "--model-dir", "--rank", "--lora-alpha",
    "--lora-dropout", "--random-state", "--batch-size", "--gradient-accumulation-steps", "--num-epochs",
    "--max-steps", "--learning-rate", "--logging-steps", "--optim", "--weight-decay", "--lr-scheduler-type",
    "--output-dir", "--report-to",
]


def test_main_py_help_lists_every_writeup_argument_with_its_default():
    out = subprocess.run([sys.executable, str(ROOT / "main.py"), "--help"], capture_output=True, text=True, check=True).stdout
    out = " ".join(out.split())  # argparse wraps help lines
    for flag in WRITEUP_FLAGS:
        assert flag in out, flag
    assert "(default: 3407)" in out and "(default: 0.0002)" in out and "(default: adamw_8bit)" in out


def test_companies_json_lists_the_41(capsys):
    assert stockllm_main(["companies", "--json"]) == 0
    companies = json.loads(capsys.readouterr().out)
    assert len(companies) == 41 and {"code", "name_zh", "market", "industry", "name_en"} <= set(companies[0])


def test_fetch_offline_writes_41_csvs_and_names_the_range(tmp_path, capsys):
    assert stockllm_main(["fetch", "--offline", "--data-dir", str(tmp_path)]) == 0
    assert len(list((tmp_path / "prices").glob("*.csv"))) == 41
    assert "2023-03-01 → 2026-06-23" in capsys.readouterr().err


def test_user_errors_are_one_line_with_exit_status_2(tmp_path, capsys):
    bad = tmp_path / "list.json"
    bad.write_text('[{"name_zh": "不存在公司"}]', "utf-8")
    assert stockllm_main(["companies", "--company-list-file", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown company name") and err.count("\n") == 1
