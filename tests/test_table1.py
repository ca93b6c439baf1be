"""Table 1 on the real offline data: the paper's counts and the marked substitutes."""

from __future__ import annotations

import pandas as pd
import pytest

from xinterp_utils import data, labels
from xinterp_utils.table1 import table1, to_markdown, write_table1


@pytest.fixture(scope="module")
def frame(data_dir):
    return table1()


def _cell(frame, dataset, lang, split):
    row = frame[(frame["dataset"] == dataset) & (frame["lang"] == lang)]
    assert len(row) == 1, (dataset, lang)
    return row.iloc[0][split], row.iloc[0]


@pytest.mark.parametrize("lang, split, count", [
    ("en", "train", 12543), ("en", "dev", 2002), ("de", "dev", 799), ("es", "dev", 1400),
    ("fr", "dev", 1476), ("ru", "dev", 579), ("vi", "train", 1400), ("vi", "dev", 800),
    ("zh", "dev", 500),
])
def test_ud_counts_match_the_paper(frame, lang, split, count):
    value, row = _cell(frame, "UD", lang, split)
    assert value == count
    assert split not in row["substituted"].split(",")


def test_wikiann_and_xnli_counts(frame):
    for lang in labels.LANGUAGES:
        value, row = _cell(frame, "WikiANN", lang, "train")
        assert (value, row["dev"]) == ((5000, 1000) if lang == "hi" else (20000, 10000))
        assert row["substituted"] == ""
        value, row = _cell(frame, "XNLI", lang, "dev")
        assert value == 2490
        assert row["substituted"] == "train" and row["train"] == 5010
        assert row["note"].startswith("XNLI-MT training data")
    assert len(frame) == 27


def test_substitutes_marked(frame):
    value, row = _cell(frame, "UD", "de", "train")
    assert value == 977 and row["substituted"] == "train" and pd.isna(row["test"])
    assert "test split is used as training data" in row["note"]
    for lang in ("ar", "hi"):
        _, row = _cell(frame, "UD", lang, "train")
        assert (row["train"], row["dev"]) == (800, 200)
        assert row["substituted"] == "train,dev" and "PUD" in row["note"]
        assert row["treebank"] == f"{lang}_pud"
    _, row = _cell(frame, "UD", "en", "train")
    assert row["substituted"] == "" and row["note"] == "" and row["treebank"] == "en_ewt"


def test_markdown_marks_cells_and_explains(frame):
    md = to_markdown(frame)
    lines = md.splitlines()
    de = next(line for line in lines if line.startswith("| UD | POS, parsing | de |"))
    ar = next(line for line in lines if line.startswith("| UD | POS, parsing | ar |"))
    en = next(line for line in lines if line.startswith("| UD | POS, parsing | en |"))
    xnli = next(line for line in lines if line.startswith("| XNLI | XNLI | en |"))
    assert de.split(" | ")[4:6] == ["977‡", "799"]
    assert ar.split(" | ")[4:6] == ["800†", "200†"]
    assert en.split(" | ")[4:7] == ["12,543", "2,002", "2,077 |"]
    assert xnli.split(" | ")[4:6] == ["5,010§", "2,490"]
    footnotes = {line[0]: line[2:] for line in lines if line and line[0] in "†‡§"}
    assert footnotes["†"] == data.default_source().manifest["ud"]["ar"]["substitute"]
    assert footnotes["‡"] == data.default_source().manifest["ud"]["de"]["substitute"]
    assert footnotes["§"].startswith("XNLI-MT training data")


def test_write_table1(frame, tmp_path):
    md_path, csv_path = write_table1(tmp_path / "figures")
    assert (md_path.name, csv_path.name) == ("table1.md", "table1.csv")
    back = pd.read_csv(csv_path, keep_default_na=False, na_values=[""])
    assert back["train"].tolist() == frame["train"].tolist()
    assert back["substituted"].fillna("").tolist() == frame["substituted"].tolist()
    assert md_path.read_text(encoding="utf-8").endswith(to_markdown(frame))
    assert sorted(p.name for p in md_path.parent.iterdir()) == ["table1.csv", "table1.md"]
