"""The allowed values of every setting that is a choice, defined once.

Kept free of imports: profiles validate overrides with them, and the result readers check
rows with them, before (or without) torch loading.
"""

# How an epoch's examples form batches (schedule.epoch_batches).
BATCHINGS = ("random", "length-grouped")
# Precision of training and evaluation (precision.py).
PRECISIONS = ("bf16-cuda", "bf16-native", "fp32")
# Embedding vocabulary of the encoder while training and sweeping (vocab.py).
VOCABS = ("full", "trimmed")
# Which parameters an interpolation moves (interpolate.interpolated_names); the others
# stay at θ_bi.
SCOPES = ("all", "encoder", "head")
# Where jobs run (jobs.run_jobs).
EXECUTORS = ("inline", "local", "slurm")

# The interpolation planes a result row names: Eq. 1 (θ_src ↔ θ_bi), Eq. 2 (θ_tgt ↔ θ_bi),
# both along one α, and Eq. 3's (α1, α2) grid.
PLANES_1D = ("eq1", "eq2")
PLANE_2D = "2d"
PLANES = (*PLANES_1D, PLANE_2D)
