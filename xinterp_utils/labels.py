"""The paper's four tasks, its nine languages and the tasks' fixed label vocabularies.

Label ids are positions in these tuples; they never depend on the data seen, so a
checkpoint's head means the same thing for every language and run. This module imports
nothing, so every other one (profiles, data readers, the encoder converter) can name
these without loading anything.
"""

from __future__ import annotations

TASKS = ("xnli", "ner", "pos", "parsing")

# The paper's languages (ISO 639-1). Adding one here is step one of "A language" in the
# README: profiles accept it in `pairs`, the data readers and the offline encoder's small
# variant cover it.
LANGUAGES = ("en", "ar", "de", "es", "fr", "hi", "ru", "vi", "zh")

# The label id of a position that is not scored (padding, a word's later subwords, the
# ROOT column of a parse): PyTorch's cross-entropy default `ignore_index`.
IGNORE_INDEX = -100

# Which dataset family each task reads.
TASK_FAMILY = {"xnli": "xnli", "ner": "wikiann", "pos": "ud", "parsing": "ud"}

XNLI_LABELS = ("entailment", "neutral", "contradiction")

# WikiANN (Rahimi et al. 2019) IOB2 tags.
NER_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")

# The 17 universal POS tags of UD v2.
UPOS_LABELS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)

# The 37 universal dependency relations of UD v2 (subtypes such as `nmod:poss`
# are stripped to their universal part before lookup).
DEPREL_LABELS = (
    "acl", "advcl", "advmod", "amod", "appos", "aux", "case", "cc", "ccomp",
    "clf", "compound", "conj", "cop", "csubj", "dep", "det", "discourse",
    "dislocated", "expl", "fixed", "flat", "goeswith", "iobj", "list", "mark",
    "nmod", "nsubj", "nummod", "obj", "obl", "orphan", "parataxis", "punct",
    "reparandum", "root", "vocative", "xcomp",
)

# UPOS tags excluded from UAS/LAS, as in the paper.
PARSING_EXCLUDED_UPOS = ("PUNCT", "SYM")

# The metric each task reports (names used in result rows).
TASK_METRIC = {"xnli": "accuracy", "ner": "span_f1", "pos": "accuracy", "parsing": "las"}


def label_names(task: str) -> tuple[str, ...]:
    """Return the output labels of `task`'s head (for parsing: the dependency relations)."""
    try:
        return {"xnli": XNLI_LABELS, "ner": NER_LABELS, "pos": UPOS_LABELS,
                "parsing": DEPREL_LABELS}[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}") from None
