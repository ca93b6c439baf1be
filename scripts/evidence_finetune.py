"""Short real fine-tuning runs per task (en → de, seed 1): loss per epoch and dev scores.

Usage: python scripts/evidence_finetune.py ENCODER CHECKPOINTS TASKS 'HPARAMS_JSON'
e.g.   python scripts/evidence_finetune.py offline-small runs/evidence xnli,ner,pos,parsing \
           '{"epochs": 3, "lr": 1e-4, "max_train_examples": 2000, "max_dev_examples": 500}'
Prints one JSON line per task with the three models' mean training loss per epoch and
dev scores on both languages (the source-only model on de is the zero-shot number).
"""

import json
import sys
import time

from xinterp_utils.config import pair_configs
from xinterp_utils.train import ensure_dev_scores, train


def main() -> None:
    """Train the three models of each task and print their summary as JSON lines."""
    encoder, root, tasks, hparams = sys.argv[1], sys.argv[2], sys.argv[3].split(","), \
        json.loads(sys.argv[4])
    for task in tasks:
        configs = pair_configs(encoder, task, "en", "de", seed=1, **hparams)
        started = time.time()
        out = {}
        for role, config in configs.items():
            train(config, root, progress=False)
            record = ensure_dev_scores(config, root, ("en", "de"))
            out[role] = {"mean_loss": [round(h["mean_loss"], 3) for h in record["history"]],
                         "dev": {k: round(v["score"], 4) for k, v in record["dev_scores"].items()},
                         "steps": record["total_steps"]}
        print(json.dumps({"encoder": encoder, "task": task, "hparams": hparams, **out,
                          "seconds": round(time.time() - started)}), flush=True)


if __name__ == "__main__":
    main()
