"""The allowed values of the training settings that are choices, defined once.

Kept free of heavy imports: profiles validate overrides with them before torch loads.
"""

# How an epoch's examples form batches (train.epoch_batches).
BATCHINGS = ("random", "length-grouped")
# Precision of training and evaluation (precision.py).
PRECISIONS = ("bf16-cuda", "bf16-native", "fp32")
# Embedding vocabulary of the encoder while training and sweeping (vocab.py).
VOCABS = ("full", "trimmed")
