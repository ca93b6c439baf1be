"""Training throughput (tokens/s) of our loop against Hugging Face `Trainer`, as a ratio.

Both sides train the same `TaskModel` (`model.build_task_model(encoder, task, seed)`) on
the same batches, in the same order: the features of the first training examples of one
language, in the order of `train.epoch_order(n, seed, 0)` (the order our loop uses),
collated by `features.collate`. Tokens are real tokens (the sum of `attention_mask`).

- Ours: `train.train(...)` itself, on a fresh checkpoint folder, with `stop_after_steps`.
  Setup (tokenizer, features, model) and the final state save are not timed: the clock is
  `train.collate`, wrapped to note when each step begins. Step i lasts from its collate
  call to the next one (collate, forward, backward, clipping, AdamW, schedule, zero_grad
  and the loop's bookkeeping); one extra untimed step closes the last interval.
- Trainer: `transformers.Trainer` with the paper's hyper-parameters, a sequential sampler
  over the pre-ordered features and a `TrainerCallback` that notes `on_step_end`. Step i
  lasts from the end of step i-1 to its own end (fetching and collating the batch
  included, as on our side).

The first `--warmup-steps` steps of each side are not timed. Repeats alternate which side
goes first; the table reports medians. Run from the repository root:

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train_throughput.py [--device cuda] [...]
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


@dataclass
class Run:
    """One timed run of one side."""

    steps: int
    tokens: int
    seconds: float
    batches: list[tuple]  # (example indices, tokens) of every collated batch, in order
    threads: int

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def _sync(device: str) -> None:
    # CUDA runs asynchronously: wait for queued work before reading the clock.
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _signature(batch: dict) -> tuple:
    return tuple(batch["example_index"].tolist()), int(batch["attention_mask"].sum())


def train_features(config: train_mod.TrainConfig, tokenizer, needed: int):
    """Return ``(config, features)``: the config capped to enough training examples for
    `needed` features, and the features our loop sees for it."""
    while True:
        feats, raw = train_mod.load_features(config, tokenizer, config.train_langs[0], "train")
        if len(feats) >= needed:
            return config, feats
        if len(raw.examples) < config.max_train_examples:  # the split is exhausted
            raise SystemExit(f"{config.task}/{config.train_langs[0]}: {len(feats)} training "
                             f"features, {needed} needed; use fewer --steps or a smaller "
                             "--batch-size")
        # Parsing drops sentences whose first word does not fit: take a few more.
        config = dataclasses.replace(config, max_train_examples=config.max_train_examples
                                     + needed - len(feats))


def run_ours(config: train_mod.TrainConfig, device: str, warmup: int, steps: int) -> Run:
    """Time `train.train` itself over `steps` steps after `warmup` untimed ones."""
    starts: list[float] = []
    batches: list[tuple] = []
    threads: list[int] = []
    real_collate = train_mod.collate

    def timed_collate(features, pad_token_id):
        if len(starts) in (warmup, warmup + steps):
            _sync(device)
            threads.append(torch.get_num_threads())
        starts.append(time.perf_counter())
        batch = real_collate(features, pad_token_id)
        batches.append(_signature(batch))
        return batch

    train_mod.collate = timed_collate  # train() looks `collate` up in its module at each step
    try:
        with tempfile.TemporaryDirectory(prefix="xinterp-bench-") as root:
            record = train_mod.train(config, root, device=device, progress=False,
                                     save_every_steps=10**9,
                                     stop_after_steps=warmup + steps + 1)
    finally:
        train_mod.collate = real_collate
    if record.get("status") != "interrupted" or len(starts) != warmup + steps + 1:
        raise RuntimeError(f"our loop ran {len(starts)} collate calls, expected "
                           f"{warmup + steps + 1} (status {record.get('status')!r}): "
                           "train.train no longer collates once per step; update this benchmark")
    tokens = sum(t for _, t in batches[warmup:warmup + steps])
    return Run(steps, tokens, starts[warmup + steps] - starts[warmup], batches[:warmup + steps],
               threads[0])


class LossOnly(nn.Module):
    """`TaskModel` as `Trainer` wants it: keyword inputs in, ``{"loss": loss}`` out."""

    accepts_loss_kwargs = False  # the loss is a per-batch mean; no num_items_in_batch

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, **batch):
        loss, _ = self.model(batch)
        return {"loss": loss}


def run_trainer(config: train_mod.TrainConfig, ordered: list[dict], pad_id: int, device: str,
                warmup: int, steps: int) -> Run:
    """Time `transformers.Trainer` on `ordered` features, taken in order, `batch_size` at a time."""
    from transformers import Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    marks: dict[int, float] = {}
    batches: list[tuple] = []
    threads: list[int] = []

    def collator(features):
        batch = collate(features, pad_id)
        batches.append(_signature(batch))
        return batch

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (warmup, warmup + steps):
                _sync(device)
                threads.append(torch.get_num_threads())
                marks[state.global_step] = time.perf_counter()

    model = LossOnly(build_task_model(config.encoder, config.task, config.seed))
    with tempfile.TemporaryDirectory(prefix="xinterp-bench-hf-") as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=config.batch_size,
            gradient_accumulation_steps=1,
            learning_rate=config.lr,
            lr_scheduler_type="linear",
            warmup_steps=config.warmup_ratio,  # a float < 1 is a ratio (transformers >= 5)
            max_grad_norm=config.max_grad_norm,
            weight_decay=config.weight_decay,
            optim="adamw_torch",
            max_steps=warmup + steps,
            train_sampling_strategy="sequential",  # our order, already applied to `ordered`
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=device.startswith("cuda"),
            remove_unused_columns=False,  # every batch key is for the model
            use_cpu=device == "cpu",
            bf16=device.startswith("cuda"),  # our loop autocasts to bf16 on GPUs
            seed=config.seed,
        )
        trainer = Trainer(model=model, args=args, train_dataset=ordered, data_collator=collator,
                          callbacks=[Clock()])
        trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict
        trainer.train()
    if set(marks) != {warmup, warmup + steps}:
        raise RuntimeError(f"Trainer stopped at step {trainer.state.global_step}, expected "
                           f"{warmup + steps}")
    # Batch k is the k-th collator call (one worker, sequential sampler), whenever the
    # data loader fetches it.
    tokens = sum(t for _, t in batches[warmup:warmup + steps])
    return Run(steps, tokens, marks[warmup + steps] - marks[warmup], batches[:warmup + steps],
               threads[0])


def main(argv: list[str] | None = None) -> int:
    """Print tokens/s of our training loop and of HF Trainer, and their ratio."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--encoder", default="offline-small",
                        help="offline-small (default), offline (12 layers), hub name or folder")
    parser.add_argument("--task", default="ner", choices=TASKS)
    parser.add_argument("--lang", default="en")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run")
    parser.add_argument("--warmup-steps", type=int, default=1, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=train_mod.default_device(), choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible (torch.cuda.is_available() is "
                     f"False; torch {torch.__version__})")
    for name in ("steps", "warmup_steps", "repeats", "batch_size", "max_length"):
        if getattr(args, name) < (0 if name == "warmup_steps" else 1):
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)

    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    # One epoch of exactly the examples needed, so our loop never reaches its epoch-end
    # evaluation; tagging windows and xnli pairs give >= 1 feature per example.
    needed = (args.warmup_steps + args.steps + 1) * args.batch_size
    config = train_mod.TrainConfig(
        args.encoder, args.task, (args.lang,), seed=args.seed, epochs=1,
        batch_size=args.batch_size, max_length=args.max_length, max_train_examples=needed)
    tokenizer = load_tokenizer(args.encoder)
    config, feats = train_features(config, tokenizer, needed)
    order = train_mod.epoch_order(len(feats), config.seed, 0)
    ordered = [feats[i] for i in order]
    n_params = sum(p.numel() for p in build_task_model(args.encoder, args.task, args.seed)
                   .parameters())

    results: dict[str, list[Run]] = {"ours": [], "Trainer": []}
    for r in range(args.repeats):
        sides = ["ours", "Trainer"] if r % 2 == 0 else ["Trainer", "ours"]
        for side in sides:
            if args.threads:
                torch.set_num_threads(args.threads)
            if side == "ours":
                run = run_ours(config, args.device, args.warmup_steps, args.steps)
            else:
                run = run_trainer(config, ordered, tokenizer.pad_token_id, args.device,
                                  args.warmup_steps, args.steps)
            results[side].append(run)
            print(f"  repeat {r + 1}/{args.repeats} {side:>7}: {run.tokens_per_s:9.0f} tokens/s "
                  f"({run.seconds:.3f} s)", flush=True)

    # Same model, data and batches: the two sides must have collated identical batches.
    reference = results["ours"][0].batches
    for side, runs in results.items():
        for run in runs:
            if run.batches != reference:
                raise RuntimeError(f"{side}: batches differ from our loop's; not comparable")

    med = {side: {"tokens": statistics.median(r.tokens for r in runs),
                  "seconds": statistics.median(r.seconds for r in runs),
                  "tok_s": statistics.median(r.tokens_per_s for r in runs)}
           for side, runs in results.items()}
    paired = [o.tokens_per_s / t.tokens_per_s
              for o, t in zip(results["ours"], results["Trainer"], strict=True)]
    threads = sorted({r.threads for runs in results.values() for r in runs})
    device_name = (torch.cuda.get_device_name() if args.device == "cuda"
                   else platform.processor() or platform.machine())
    # Both sides pad each batch to its longest feature; report how much of it is real.
    w, b = args.warmup_steps, args.batch_size
    groups = [ordered[i:i + b] for i in range(w * b, (w + args.steps) * b, b)]
    padded = sum(len(g) * max(len(f["input_ids"]) for f in g) for g in groups)
    print()
    print(f"device        {args.device} ({device_name}); torch threads {threads}; "
          f"autocast {'bf16' if args.device == 'cuda' else 'off (fp32)'}")
    print(f"versions      python {platform.python_version()}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}")
    print(f"model         {args.encoder} + {args.task} head, {n_params / 1e6:.1f} M parameters")
    print(f"settings      lang {args.lang}, batch {args.batch_size}, max length {args.max_length}"
          f", {args.steps} timed steps after {args.warmup_steps} warm-up, "
          f"{args.repeats} repeats (medians), AdamW lr {config.lr}, clip {config.max_grad_norm}")
    print(f"batches       identical on both sides; real tokens fill "
          f"{med['ours']['tokens'] / padded:.0%} of the padded [B, T] positions")
    print()
    print(f"{'':8} {'steps':>6} {'tokens':>8} {'seconds':>9} {'tokens/s':>10}")
    for side, m in med.items():
        print(f"{side:8} {args.steps:>6} {m['tokens']:>8.0f} {m['seconds']:>9.3f} "
              f"{m['tok_s']:>10.0f}")
    print()
    print(f"ratio ours / Trainer (tokens/s, medians): {med['ours']['tok_s'] / med['Trainer']['tok_s']:.3f}"
          f"   per repeat: {', '.join(f'{p:.3f}' for p in paired)}   (> 1: ours is faster)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
