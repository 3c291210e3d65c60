"""The default universe and company resolution behave as the write-up describes."""

import json

import pandas as pd
import pytest

from stockllm.errors import StockLLMError
from stockllm.universe import default_universe, load_company_list, resolve, resolve_code, resolve_name

# The write-up's 41 names in its own spellings (its aliases 日月光 and 益登科技 included) and their codes.
WRITEUP_NAMES = {
    "研揚": "6579", "宏碁": "2353", "凌華": "6166", "研華": "2395", "日月光": "3711", "華擎": "3515",
    "華碩": "2357", "圓剛": "2417", "艾訊": "3088", "勤誠": "8210", "仁寶": "2324", "中光電": "5371",
    "台達電": "2308", "益登科技": "3048", "慧友": "5484", "鴻海": "2317", "巨大": "9921", "技嘉": "2376",
    "英業達": "2356", "迎廣": "6117", "廣運": "6125", "立端": "6245", "麗臺": "2465", "光寶科": "2301",
    "聯發科": "2454", "神達": "3706", "微星": "2377", "新漢": "8234", "和碩": "4938", "廣達": "2382",
    "所羅門": "2359", "飛捷": "6206", "德律": "3030", "曜越": "3540", "醫揚": "6569", "台積電": "2330",
    "聯電": "2303", "欣興": "3037", "緯創": "3231", "緯穎": "6669", "聰泰": "5474",
}


def test_default_universe_is_the_writeups_41_listed_companies():
    companies = default_universe()
    assert len(companies) == 41
    assert sum(c.market == "TWSE" for c in companies) == 33
    assert sum(c.market == "TPEx" for c in companies) == 8
    assert all(c.name_en for c in companies), "every default company has an English name for news queries"
    assert {c.code for c in companies} == set(WRITEUP_NAMES.values())


@pytest.mark.parametrize("name,code", sorted(WRITEUP_NAMES.items()))
def test_every_writeup_spelling_resolves_to_its_code(name, code):
    assert resolve_name(name).code == code


def test_aliases_resolve_to_the_listed_names():
    assert resolve_name("日月光").name_zh == "日月光投控"
    assert resolve_name("益登科技").name_zh == "益登"


def test_codes_may_be_numbers_or_strings_and_tpex_companies_resolve():
    assert resolve({"code": 2330}).name_zh == "台積電"
    assert resolve({"code": "5371"}).market == "TPEx"
    assert resolve_code("6488").market == "TPEx"  # 環球晶, a TPEx company outside the default universe
    assert resolve_code("2330").industry == "半導體業"


def test_unknown_name_gives_one_line_error_with_closest_matches():
    with pytest.raises(StockLLMError) as err:
        resolve_name("台積")
    message = str(err.value)
    assert "\n" not in message and "台積電" in message


def test_unknown_code_is_a_clear_error():
    with pytest.raises(StockLLMError, match="unknown stock code '9999"):
        resolve_code("99999")


def test_company_list_file_mixes_names_and_codes_and_drops_duplicates(tmp_path):
    path = tmp_path / "companies.json"
    path.write_text(json.dumps([{"name_zh": "台積電"}, {"code": 2317}, {"code": "2330"}, {"name_zh": "日月光"}], ensure_ascii=False), "utf-8")
    assert [c.code for c in load_company_list(path)] == ["2330", "2317", "3711"]


@pytest.mark.parametrize("content,problem", [("not json", "not valid"), ("{}", "non-empty JSON list"), ("[{\"x\": 1}]", "neither 'code' nor 'name_zh'")])
def test_bad_company_list_files_are_explained(tmp_path, content, problem):
    path = tmp_path / "bad.json"
    path.write_text(content, "utf-8")
    with pytest.raises(StockLLMError, match=problem):
        load_company_list(path)


def test_codes_all_selects_every_company_stored_in_the_data_dir(tmp_path):
    from stockllm import store
    from stockllm.universe import select_companies

    frame = pd.DataFrame({"date": ["2026-01-05"], "open": [10.0], "high": [10.0], "low": [10.0], "close": [10.0]})
    for code in ("6488", "2330", "1102"):
        store.write_prices(tmp_path, code, frame)
    companies = select_companies(None, ["all"], tmp_path)
    assert [c.code for c in companies] == ["1102", "2330", "6488"]
    assert companies[2].market == "TPEx"


def test_codes_all_refuses_an_empty_data_dir_other_codes_and_unlisted_files(tmp_path):
    from stockllm import store
    from stockllm.universe import select_companies

    with pytest.raises(StockLLMError, match="there is none"):
        select_companies(None, ["all"], tmp_path)
    frame = pd.DataFrame({"date": ["2026-01-05"], "close": [10.0]})
    store.write_prices(tmp_path, "2330", frame)
    with pytest.raises(StockLLMError, match="drop the other codes"):
        select_companies(None, ["all", "2317"], tmp_path)
    store.write_prices(tmp_path, "manifest", frame)
    with pytest.raises(StockLLMError, match="manifest"):
        select_companies(None, ["all"], tmp_path)
