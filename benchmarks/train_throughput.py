"""Training cost per sentence: our loop against itself before, and against HF `Trainer`.

Three contenders train the same `TaskModel` (`model.build_task_model(encoder, task,
seed)`) for one epoch over the same training examples (the first `--examples` of one
language), with the paper's optimiser settings (AdamW, lr 2e-5, linear schedule with 10 %
warm-up, clipping at 1.0, no weight decay):

- **before**: `train.train` as every committed run before this benchmark's change used
  it: random batches (`batching=random`), fp32 (`precision=fp32`), the full 250k-piece
  vocabulary (`vocab=full`);
- **ours**: `train.train` with `batching=length-grouped`, `precision=bf16-native` (bf16
  autocast where the CPU or GPU has it natively, fp32 elsewhere) and `vocab=trimmed`;
- **Trainer**: `transformers.Trainer` with its best settings for the same job:
  `train_sampling_strategy="group_by_length"` (transformers 5's name for
  `group_by_length=True`), `bf16` where the device has native bf16, fused AdamW.

The clock: each side's step ends are noted (our `train._Training.step`, Trainer's
`on_step_end`); the time from the end of the first `--warmup-steps` steps to the end of
the epoch's last step is divided by the sentences those steps trained on. Fetching and
collating batches is inside it; model building, featurisation and our epoch-end dev
evaluation are not. Every side must have trained on every example exactly once (the
script fails otherwise). Repeats rotate the order of the sides; the table shows medians.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train_throughput.py                  # ~8 min
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train_throughput.py --encoder offline-small --examples 512
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass

import torch
from torch import nn

from xinterp_utils import train as train_mod
from xinterp_utils.encoders import load_tokenizer
from xinterp_utils.features import collate
from xinterp_utils.labels import TASKS
from xinterp_utils.model import build_task_model
from xinterp_utils.precision import autocast_dtype

SIDES = ("before", "ours", "Trainer")
BEFORE = {"batching": "random", "precision": "fp32", "vocab": "full"}
OURS = {"batching": "length-grouped", "precision": "bf16-native", "vocab": "trimmed"}


@dataclass
class Run:
    """One timed epoch of one side."""

    seconds: float  # timed steps only
    sentences: int  # examples in the timed steps
    steps: int  # timed steps
    examples: list[int]  # the example index of every feature trained on (all steps)
    real_tokens: int  # timed steps
    padded_tokens: int  # timed steps, [B, T] positions

    @property
    def s_per_sentence(self) -> float:
        return self.seconds / self.sentences


def _sync(device: str) -> None:
    # CUDA runs asynchronously: wait for queued work before reading the clock.
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(ends: list[float], batches: list[dict], device: str, warmup: int, n_steps: int):
    """Return the Run of an epoch whose step ends are `ends` and batches `batches`."""
    if len(ends) != n_steps or len(batches) != n_steps:
        raise RuntimeError(f"{len(ends)} step ends and {len(batches)} batches seen, "
                           f"{n_steps} expected")
    timed = batches[warmup:]
    return Run(seconds=ends[-1] - ends[warmup - 1], steps=len(timed),
               sentences=sum(b["n"] for b in timed),
               examples=[i for b in batches for i in b["examples"]],
               real_tokens=sum(b["real"] for b in timed),
               padded_tokens=sum(b["padded"] for b in timed))


def _note(batch: dict) -> dict:
    ids = batch["input_ids"]
    return {"n": ids.shape[0], "examples": batch["example_index"].tolist(),
            "real": int(batch["attention_mask"].sum()), "padded": ids.numel()}


def run_ours(config: train_mod.TrainConfig, device: str, warmup: int, n_steps: int) -> Run:
    """Time one epoch of `train.train` itself (setup and the epoch-end evaluation excluded)."""
    ends: list[float] = []
    batches: list[dict] = []
    real_step = train_mod._Training.step

    def timed_step(self, batch, autocast):
        loss = real_step(self, batch, autocast)
        _sync(device)
        ends.append(time.perf_counter())
        batches.append(_note(batch))
        return loss

    train_mod._Training.step = timed_step  # the loop calls it once per step
    try:
        with tempfile.TemporaryDirectory(prefix="xinterp-bench-") as root:
            record = train_mod.train(config, root, device=device, progress=False,
                                     save_every_steps=10**9, stop_after_steps=n_steps)
    finally:
        train_mod._Training.step = real_step
    if record.get("status") != "interrupted":
        raise RuntimeError(f"our loop ended with status {record.get('status')!r}")
    return _timed(ends, batches, device, warmup, n_steps)


class LossOnly(nn.Module):
    """`TaskModel` as `Trainer` wants it: keyword inputs in, ``{"loss": loss}`` out."""

    accepts_loss_kwargs = False  # the loss is a per-batch mean; no num_items_in_batch

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, **batch):
        loss, _ = self.model(batch)
        return {"loss": loss}


def run_trainer(config: train_mod.TrainConfig, feats: list[dict], pad_id: int, device: str,
                warmup: int, n_steps: int, bf16: bool) -> Run:
    """Time one epoch of `transformers.Trainer` on `feats` with group-by-length batches."""
    from transformers import Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    ends: list[float] = []
    batches: list[dict] = []

    def collator(features):
        batch = collate(features, pad_id)
        batches.append(_note(batch))
        return batch

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            _sync(device)
            ends.append(time.perf_counter())

    model = LossOnly(build_task_model(config.encoder, config.task, config.seed))
    with tempfile.TemporaryDirectory(prefix="xinterp-bench-hf-") as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.lr,
            lr_scheduler_type="linear",
            warmup_steps=config.warmup_ratio,  # a float < 1 is a ratio (transformers >= 5)
            max_grad_norm=config.max_grad_norm,
            weight_decay=config.weight_decay,
            optim="adamw_torch_fused",
            num_train_epochs=1,
            train_sampling_strategy="group_by_length",
            logging_strategy="no", save_strategy="no", eval_strategy="no",
            report_to="none", disable_tqdm=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=device.startswith("cuda"),
            remove_unused_columns=False,  # every batch key is for the model
            use_cpu=device == "cpu",
            bf16=bf16,
            seed=config.seed,
        )
        trainer = Trainer(model=model, args=args, train_dataset=feats, data_collator=collator,
                          callbacks=[Clock()])
        trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict
        trainer.train()
    return _timed(ends, batches, device, warmup, n_steps)


def main(argv: list[str] | None = None) -> int:
    """Print seconds per training sentence of before, ours and Trainer, and the ratios."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--encoder", default="offline",
                        help="offline (12 layers, default), offline-small, hub name or folder")
    parser.add_argument("--task", default="ner", choices=TASKS)
    parser.add_argument("--lang", default="en")
    parser.add_argument("--examples", type=int, default=2000, help="training examples (one epoch)")
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default=train_mod.default_device(), choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--sides", default=",".join(SIDES),
                        help=f"comma-separated subset of {SIDES}")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    for name in ("examples", "warmup_steps", "repeats", "batch_size", "max_length"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    sides = [s for s in args.sides.split(",") if s]
    if not sides or set(sides) - set(SIDES):
        parser.error(f"--sides: expected a subset of {SIDES}")
    if args.threads:
        torch.set_num_threads(args.threads)

    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    base = train_mod.TrainConfig(
        args.encoder, args.task, (args.lang,), seed=args.seed, epochs=1,
        batch_size=args.batch_size, max_length=args.max_length,
        max_train_examples=args.examples)
    configs = {"before": dataclasses.replace(base, **BEFORE),
               "ours": dataclasses.replace(base, **OURS)}
    tokenizer = load_tokenizer(args.encoder)
    feats, _ = train_mod.load_features(base, tokenizer, args.lang, "train")
    n_steps = -(-len(feats) // args.batch_size)
    if n_steps <= args.warmup_steps:
        parser.error(f"{len(feats)} features make {n_steps} steps; need more --examples")
    bf16 = autocast_dtype("bf16-native", args.device) is not None
    n_params = sum(p.numel() for p in build_task_model(args.encoder, args.task, args.seed)
                   .parameters())

    # A long tagging sentence gives several windows (features) with its example index.
    expected = sorted(f["example_index"] for f in feats)
    results: dict[str, list[Run]] = {side: [] for side in sides}
    for r in range(args.repeats):
        for side in sides[r % len(sides):] + sides[:r % len(sides)]:
            if args.threads:
                torch.set_num_threads(args.threads)
            if side == "Trainer":
                run = run_trainer(base, feats, tokenizer.pad_token_id, args.device,
                                  args.warmup_steps, n_steps, bf16)
            else:
                run = run_ours(configs[side], args.device, args.warmup_steps, n_steps)
            if sorted(run.examples) != expected:
                raise RuntimeError(f"{side}: did not train on every feature exactly once")
            results[side].append(run)
            print(f"  repeat {r + 1}/{args.repeats} {side:>8}: {run.s_per_sentence * 1e3:8.2f} "
                  f"ms/sentence ({run.seconds:.1f} s, {run.steps} steps)", flush=True)

    device_name = (torch.cuda.get_device_name() if args.device == "cuda"
                   else platform.processor() or platform.machine())
    print()
    print(f"device        {args.device} ({device_name}); torch threads "
          f"{torch.get_num_threads()}; native bf16: {bf16}")
    print(f"versions      python {platform.python_version()}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}")
    print(f"model         {args.encoder} + {args.task} head, {n_params / 1e6:.1f} M parameters")
    print(f"data          {len(feats)} training features of {args.lang} (one epoch, "
          f"{n_steps} steps of {args.batch_size}, the first {args.warmup_steps} untimed), "
          f"max length {args.max_length}; {args.repeats} repeats (medians)")
    print()
    print(f"{'':9} {'s/step':>8} {'ms/sentence':>12} {'sentences/s':>12} {'real tokens':>12}")
    med = {}
    for side, runs in results.items():
        med[side] = statistics.median(r.s_per_sentence for r in runs)
        step = statistics.median(r.seconds / r.steps for r in runs)
        fill = statistics.median(r.real_tokens / r.padded_tokens for r in runs)
        print(f"{side:9} {step:>8.3f} {med[side] * 1e3:>12.2f} {1 / med[side]:>12.1f} "
              f"{fill:>12.0%}")
    print()
    targets = {("before", "ours"): 6.0, ("Trainer", "ours"): 1.2}
    for (slow, fast), target in targets.items():
        if slow in med and fast in med:
            ratio = med[slow] / med[fast]
            verdict = "met" if ratio >= target else "NOT met"
            print(f"speed-up {fast} over {slow} (per training sentence): {ratio:.2f}x  "
                  f"(target >= {target}x: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
