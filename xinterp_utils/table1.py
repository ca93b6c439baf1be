"""The paper's Table 1: sentences (UD, WikiANN) and pairs (XNLI) per language and split.

Counts are those of the splits the project reads (`data.load_split`), so where an
offline substitute stands in for an official split the table says so: the cell gets a
marker and the table a footnote with the manifest's note.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from xinterp_utils import data, labels
from xinterp_utils.paths import atomic_write, repo_root

from .progress import tqdm

# (task whose split is counted, dataset shown, tasks it serves), in the paper's order.
_ROWS = (
    ("pos", "UD", "POS, parsing"),
    ("ner", "WikiANN", "NER"),
    ("xnli", "XNLI", "XNLI"),
)
_MARKERS = ("†", "‡", "§", "¶", "‖")
COLUMNS = ("dataset", "tasks", "lang", "treebank", "train", "dev", "test",
           "substituted", "note")


def table1(source: data.Source | str | os.PathLike | None = None) -> pd.DataFrame:
    """Return Table 1 as a DataFrame, one row per (dataset, language).

    `train`/`dev`/`test` are counts of sentences (UD, WikiANN) or pairs (XNLI), empty
    where the source has no such split; `substituted` lists the splits standing in for
    an official one (comma-separated, "" if none) and `note` is the source's explanation.
    """
    src = data.resolve_source(source)
    rows = []
    todo = [(task, name, tasks, lang) for task, name, tasks in _ROWS
            for lang in labels.LANGUAGES if lang in src.languages(labels.TASK_FAMILY[task])]
    for task, name, tasks, lang in tqdm(todo, desc="table 1", leave=False):
        family = labels.TASK_FAMILY[task]
        row = {"dataset": name, "tasks": tasks, "lang": lang,
               "treebank": (src.treebank(lang) or "") if family == "ud" else "",
               "train": None, "dev": None, "test": None}
        substituted, notes = [], []
        for split in src.splits(family, lang):
            loaded = data.load_split(task, lang, split, source=src)
            row[split] = len(loaded)
            if loaded.substitute:
                substituted.append(split)
                if loaded.substitute not in notes:
                    notes.append(loaded.substitute)
        row["substituted"] = ",".join(substituted)
        row["note"] = " ".join(notes)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for split in data.SPLITS:
        frame[split] = frame[split].astype("Int64")
    return frame


def to_markdown(frame: pd.DataFrame) -> str:
    """Return the table as Markdown: substituted cells carry a marker explained below it."""
    markers: dict[str, str] = {}
    for note in frame["note"]:
        if note and note not in markers:
            i = len(markers)
            markers[note] = _MARKERS[i] if i < len(_MARKERS) else f"[{i + 1}]"
    header = ["dataset", "tasks", "lang", "treebank", "train", "dev", "test"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 4 + ["---:"] * 3) + "|"]
    for row in frame.itertuples(index=False):
        subs = set(row.substituted.split(",")) if row.substituted else set()
        mark = markers.get(row.note, "")
        cells = [row.dataset, row.tasks, row.lang, row.treebank]
        for split in data.SPLITS:
            value = getattr(row, split)
            cell = "" if pd.isna(value) else f"{int(value):,}"
            cells.append(cell + (mark if split in subs else ""))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Sentences (UD, WikiANN) or sentence pairs (XNLI) per split, as used here. "
                 "An empty cell: no such split in the source.")
    for note, mark in markers.items():
        lines.append("")
        lines.append(f"{mark} {note}")
    return "\n".join(lines) + "\n"


def write_table1(out_dir: str | os.PathLike | None = None,
                 source: data.Source | str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Write `table1.md` and `table1.csv` atomically into `out_dir` (default `figures/`).

    Returns (markdown path, csv path).
    """
    out = Path(out_dir) if out_dir is not None else repo_root() / "figures"
    frame = table1(source)
    md_path, csv_path = out / "table1.md", out / "table1.csv"
    with atomic_write(md_path, "w") as handle:
        handle.write("# Table 1: dataset statistics\n\n" + to_markdown(frame))
    with atomic_write(csv_path, "w") as handle:
        frame.to_csv(handle, index=False, lineterminator="\n")
    return md_path, csv_path
