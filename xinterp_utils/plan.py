"""`xinterp plan PROFILE`: the size of a profile's work, before anything runs.

Counts come from the same planners the notebooks use: fine-tuning runs from
`profiles.plan_runs` (monolingual runs shared between pairs), sweeps from
`sweep_spec.plan_sweeps`, evaluated points as the distinct points of each sweep (Eq. 1 and
Eq. 2 at α = 1 are both θ_bi, evaluated once) times its two dev sets. Example counts
are read from offline data when the profile uses it, else taken from the official split
sizes (`OFFICIAL_SIZES`, the paper's Table 1). Tokens are counted by featurising with
the encoder's own tokenizer where both the data and the tokenizer are local; otherwise
they are estimated from `MEAN_TOKENS` (measured here, stated in the output).

GPU time is an estimate from stated assumptions: training costs 6 × parameters FLOPs
per token (forward and backward), evaluation 2 × parameters, at a model FLOPs
utilisation `mfu` of a GPU with `peak_tflops` dense bf16 TFLOP/s.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import safe_open

from . import data, labels
from .encoders import EncoderUnavailableError, load_tokenizer, resolve_encoder
from .features import featurize
from .profiles import Profile, pair_grid, plan_runs
from .remedy_settings import remedy_plan_line
from .sweep_spec import plan_sweeps

# Parameters of the paper's encoders (embeddings included), for the FLOPs estimate.
# Sources: Conneau et al. 2020 (XLM-R), Table 7: mBERT 178M and XLM-R large 560M (550M
# in the text); counted from the hub checkpoints: mBERT 177.9M, XLM-R large 559.9M.
ENCODER_PARAMETERS = {
    "bert-base-multilingual-cased": 178_000_000,
    "xlm-roberta-large": 560_000_000,
}

# Official split sizes (sentences for UD and WikiANN, pairs for XNLI) as in the paper's
# Table 1: UD r2.7 treebanks (en_ewt, ar_padt, de_gsd, es_gsd, fr_gsd, hi_hdtb, ru_gsd,
# vi_vtb, zh_gsd), WikiANN with Rahimi et al.'s splits, XNLI (train = MultiNLI, 392,702
# pairs machine-translated into each language; dev 2,490 pairs).
OFFICIAL_SIZES = {
    "ud": {"en": (12_543, 2_002), "ar": (6_075, 909), "de": (13_814, 799),
           "es": (14_187, 1_400), "fr": (14_450, 1_476), "hi": (13_304, 1_659),
           "ru": (3_850, 579), "vi": (1_400, 800), "zh": (3_997, 500)},
    "wikiann": {**{lang: (20_000, 10_000) for lang in labels.LANGUAGES}, "hi": (5_000, 1_000)},
    "xnli": {lang: (392_702, 2_490) for lang in labels.LANGUAGES},
}

# Mean model-input tokens per example (special tokens included, no cap), measured on the
# first 1,000 dev examples per language of the offline data with the XLM-R SentencePiece
# vocabulary of the `offline-small` encoder (ar, hi UD: the PUD treebank). Used where
# tokens cannot be counted (hub data or a hub tokenizer); capped at max_length.
MEAN_TOKENS = {
    "xnli": {"en": 43.6, "ar": 52.7, "de": 50.4, "es": 46.5, "fr": 54.1, "hi": 56.9,
             "ru": 52.3, "vi": 49.3, "zh": 39.3},
    "wikiann": {"en": 16.5, "ar": 17.0, "de": 21.5, "es": 14.5, "fr": 15.1, "hi": 16.2,
                "ru": 19.0, "vi": 12.9, "zh": 40.5},
    "ud": {"en": 24.3, "ar": 42.5, "de": 29.9, "es": 44.8, "fr": 43.5, "hi": 45.5,
           "ru": 49.1, "vi": 25.2, "zh": 59.6},
}


@dataclass(frozen=True)
class Assumptions:
    """What the GPU-hour estimate assumes: `peak_tflops` dense bf16 TFLOP/s per GPU
    (H100/H200 SXM: ~989 spec; 790 is a sustained clock), model FLOPs utilisation `mfu`
    (0.35: typical of BERT-size fine-tuning with padding-free batches), FLOPs per token
    and parameter (6 training, 2 evaluation)."""

    peak_tflops: float = 790.0
    mfu: float = 0.35
    train_flops_per_param_token: float = 6.0
    eval_flops_per_param_token: float = 2.0


@dataclass
class SplitSize:
    """Examples and model-input tokens of one (task, language, split) as the runs use it."""

    examples: int
    tokens: float
    counted: bool  # True: counted from the data; False: official size / mean tokens


@dataclass
class Plan:
    """The counts of a profile's work and the estimate (`report` prints it)."""

    profile: str
    runs: int
    runs_by_task: dict
    sweeps_1d: int
    sweeps_2d: int
    points_1d: int
    points_2d: int
    train_examples: int  # summed over runs and epochs (example passes)
    train_tokens: float  # summed over runs and epochs
    dev_evaluations: int  # dev-set evaluations: during training and in the sweeps
    dev_tokens: float  # tokens of all those evaluations
    dev_tokens_once: float  # tokens of the distinct dev sets involved, once each
    data_note: str
    parameters: dict
    gpu_hours_train: float | None
    gpu_hours_eval: float | None
    assumptions: Assumptions = field(default_factory=Assumptions)
    notes: list = field(default_factory=list)
    remedies: str | None = None  # notebook 06's work, counted (remedy_settings)

    @property
    def gpu_hours(self) -> float | None:
        """Return the estimated GPU-hours in all (None when a parameter count is unknown)."""
        if self.gpu_hours_train is None or self.gpu_hours_eval is None:
            return None
        return self.gpu_hours_train + self.gpu_hours_eval


def encoder_parameters(name: str) -> int | None:
    """Return the parameter count of encoder `name`: `ENCODER_PARAMETERS` for the paper's
    hub encoders, counted from the safetensors header of an offline or local folder,
    None otherwise."""
    if name in ENCODER_PARAMETERS:
        return ENCODER_PARAMETERS[name]
    try:
        source = resolve_encoder(name)
    except (OSError, ValueError):
        return None
    if not isinstance(source, Path):
        return None
    total = 0
    for path in sorted(source.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                total += math.prod(handle.get_slice(key).get_shape())
    return total or None


class _Sizer:
    """Sizes of (encoder, task, lang, split, cap) with memoised counting."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self.source = data.resolve_source(profile.data)
        self.offline = isinstance(self.source, data.OfflineSource)
        self.cache: dict = {}
        self.tokenizers: dict = {}

    def tokenizer(self, encoder: str):
        if encoder not in self.tokenizers:
            tok = None
            if self.offline:
                try:
                    tok = load_tokenizer(encoder)
                except (EncoderUnavailableError, OSError, ValueError):
                    tok = None
            self.tokenizers[encoder] = tok
        return self.tokenizers[encoder]

    def size(self, encoder: str, task: str, lang: str, split: str, cap: int | None,
             max_length: int) -> SplitSize:
        key = (encoder, task, lang, split, cap, max_length)
        if key in self.cache:
            return self.cache[key]
        family = labels.TASK_FAMILY[task]
        tok = self.tokenizer(encoder)
        if self.offline:
            raw = data.load_split(task, lang, split, source=self.source)
            n = len(raw) if cap is None else min(cap, len(raw))
            if tok is not None:
                part = dataclasses.replace(raw, examples=raw.examples[:n],
                                           fingerprint=f"{raw.fingerprint}:first{n}")
                feats = featurize(part, tok, max_length=max_length, train=(split == "train"))
                out = SplitSize(n, float(sum(len(f["input_ids"]) for f in feats)), True)
            else:
                out = SplitSize(n, n * min(MEAN_TOKENS[family][lang], max_length), False)
        else:
            full = OFFICIAL_SIZES[family][lang][0 if split == "train" else 1]
            n = full if cap is None else min(cap, full)
            out = SplitSize(n, n * min(MEAN_TOKENS[family][lang], max_length), False)
        self.cache[key] = out
        return out


def distinct_points(spec) -> int:
    """Return how many distinct models a sweep evaluates (points with the same (α1, α2)
    are one model, evaluated once)."""
    return len({(round(a1, 9), round(a2, 9)) for _plane, _a, a1, a2 in spec.points()})


def plan_profile(profile: Profile, assumptions: Assumptions | None = None) -> Plan:
    """Return the `Plan` of `profile`: counts of runs, sweeps, points, examples and
    tokens, and GPU-hours under `assumptions` (default `Assumptions()`)."""
    assumptions = assumptions or Assumptions()
    sizer = _Sizer(profile)
    runs = plan_runs(profile)
    by_task: dict[str, int] = {}
    params = {name: encoder_parameters(name) for name in profile.encoders}
    train_examples = 0
    train_tokens = 0.0
    dev_evals = 0
    dev_tokens = 0.0
    train_tokens_by_encoder = dict.fromkeys(profile.encoders, 0.0)
    dev_tokens_by_encoder = dict.fromkeys(profile.encoders, 0.0)
    for config in runs:
        by_task[config.task] = by_task.get(config.task, 0) + 1
        for lang in config.train_langs:
            size = sizer.size(config.encoder, config.task, lang, "train",
                              config.max_train_examples, config.max_length)
            train_examples += size.examples * config.epochs
            train_tokens += size.tokens * config.epochs
            train_tokens_by_encoder[config.encoder] += size.tokens * config.epochs
            dev = sizer.size(config.encoder, config.task, lang, "dev",
                             config.max_dev_examples, config.max_length)
            n = config.epochs * config.evals_per_epoch
            dev_evals += n
            dev_tokens += n * dev.tokens
            dev_tokens_by_encoder[config.encoder] += n * dev.tokens
    # A monolingual run is also scored on the other language of each pair it serves.
    seen = set()
    for encoder, task, source, target, seed in pair_grid(profile):
        hp = profile.train_hparams(task)
        for langs, other in (((source,), target), ((target,), source)):
            key = (encoder, task, langs, seed, other)
            if key in seen:
                continue
            seen.add(key)
            dev = sizer.size(encoder, task, other, "dev", hp["max_dev_examples"],
                             hp["max_length"])
            dev_evals += 1
            dev_tokens += dev.tokens
            dev_tokens_by_encoder[encoder] += dev.tokens
    sweeps = {two_d: plan_sweeps(profile, two_d=two_d) for two_d in (False, True)}
    points = {}
    for two_d, specs in sweeps.items():
        points[two_d] = 0
        for spec in specs:
            k = distinct_points(spec)
            points[two_d] += k
            hp = spec.hparams
            for lang in (spec.source, spec.target):
                dev = sizer.size(spec.encoder, spec.task, lang, "dev", spec.max_dev_examples,
                                 hp["max_length"])
                dev_evals += k
                dev_tokens += k * dev.tokens
                dev_tokens_by_encoder[spec.encoder] += k * dev.tokens
    once = sum(s.tokens for key, s in sizer.cache.items() if key[3] == "dev")
    counted = all(s.counted for s in sizer.cache.values())
    if sizer.offline and counted:
        note = (f"counted from the offline data in {sizer.source.data_dir} with each "
                "encoder's tokenizer")
    elif sizer.offline:
        note = (f"examples counted from the offline data in {sizer.source.data_dir}; tokens "
                "estimated from MEAN_TOKENS (a tokenizer could not be loaded here)")
    else:
        note = ("hub data: exact counts need the data downloaded; examples are the official "
                "split sizes (the paper's Table 1), tokens estimated from MEAN_TOKENS "
                "(XLM-R SentencePiece pieces per example measured on the offline copies)")
    rate = assumptions.peak_tflops * 1e12 * assumptions.mfu  # FLOP/s actually achieved
    hours_train = hours_eval = None
    if all(p is not None for p in params.values()):
        hours_train = sum(assumptions.train_flops_per_param_token * params[e] * t
                          for e, t in train_tokens_by_encoder.items()) / rate / 3600
        hours_eval = sum(assumptions.eval_flops_per_param_token * params[e] * t
                         for e, t in dev_tokens_by_encoder.items()) / rate / 3600
    notes = [f"encoder {e}: parameter count unknown (hub name not in ENCODER_PARAMETERS); "
             "no GPU-hour estimate" for e, p in params.items() if p is None]
    return Plan(profile.name, len(runs), by_task, len(sweeps[False]), len(sweeps[True]),
                points[False], points[True], train_examples, train_tokens, dev_evals,
                dev_tokens, once, note, params, hours_train, hours_eval, assumptions, notes,
                remedy_plan_line(profile))


def report(plan: Plan) -> list[str]:
    """Return the plan as printable lines (counts, then the estimate and its assumptions)."""
    a = plan.assumptions
    tasks = ", ".join(f"{t} {n}" for t, n in plan.runs_by_task.items())
    lines = [
        f"profile {plan.profile}",
        f"fine-tuning runs: {plan.runs} ({tasks}; monolingual runs shared between pairs)",
        f"sweeps: {plan.sweeps_1d} 1D (Eq. 1 and 2), {plan.sweeps_2d} 2D (Eq. 3)",
        (f"evaluated points: {plan.points_1d} 1D + {plan.points_2d} 2D = "
        f"{plan.points_1d + plan.points_2d} distinct models, each on 2 dev sets "
        f"({2 * (plan.points_1d + plan.points_2d)} dev-set evaluations)"),
        (f"training: {plan.train_examples:,} example passes (all runs and epochs), "
        f"{plan.train_tokens:,.0f} tokens"),
        (f"dev sets: {plan.dev_tokens_once:,.0f} tokens once each; "
        f"{plan.dev_evaluations:,} dev-set evaluations in all (training and sweeps), "
        f"{plan.dev_tokens:,.0f} tokens"),
        *([plan.remedies] if plan.remedies else []),
        f"counts: {plan.data_note}",
        "parameters: " + ", ".join(f"{e} {p / 1e6:,.1f}M" if p else f"{e} unknown"
                                   for e, p in plan.parameters.items()),
    ]
    if plan.gpu_hours is not None:
        lines.append(f"estimate: {plan.gpu_hours:,.3g} GPU-hours ({plan.gpu_hours_train:,.3g} "
                     f"training, {plan.gpu_hours_eval:,.3g} evaluation)")
    lines += [f"note: {n}" for n in plan.notes]
    lines += [
        ("assumptions: training FLOPs = "
        f"{a.train_flops_per_param_token:g} x parameters x tokens, evaluation FLOPs = "
        f"{a.eval_flops_per_param_token:g} x parameters x tokens; GPU peak "
        f"{a.peak_tflops:g} TFLOP/s dense bf16 (--peak-tflops), model FLOPs utilisation "
        f"{a.mfu:g} (--mfu); no padding, no data loading or checkpointing time, no "
        "queueing; one GPU per job"),
    ]
    return lines
