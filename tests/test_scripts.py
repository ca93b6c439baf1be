"""The reproduction's helper scripts on a real tiny trained pair."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from .conftest import REPO
from .conftest import TINY_ENCODER as ENCODER
from .conftest import TINY_HPARAMS as TINY


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _overrides(root, results):
    tiny = [f"{k}={v}" for k, v in TINY.items()]
    return ["tasks=[pos]", "pairs=[en-de]", "seeds=[3]", f"encoders=[{ENCODER}]",
            f"checkpoints={root}", f"results={results}", "alphas_1d=[0.0, 0.5, 1.0]", *tiny]


def test_scope_sweeps_interpolate_only_their_part(trained_pos_pair, tmp_path, capsys):
    root, _configs, records = trained_pos_pair
    main = _script("scope_sweeps").main
    assert main(["smoke", *_overrides(root, tmp_path)]) == 0
    folder = tmp_path / "sweeps" / ENCODER / "pos" / "en-de"
    rows = {scope: pd.read_csv(folder / f"seed3-{scope}.csv") for scope in ("encoder", "head")}
    bi = records["bi"]["dev_scores"]
    for scope, frame in rows.items():
        assert set(frame["plane"]) == {"eq1"} and set(frame["scope"]) == {scope}
        assert sorted(frame["alpha"].unique()) == [0.0, 0.5, 1.0]
        # α = 1 is θ_bi whatever the scope: its own dev scores.
        at_bi = frame[frame["alpha"] == 1.0].set_index("eval_lang")["score"]
        for lang in ("en", "de"):
            assert at_bi[lang] == pytest.approx(bi[lang]["score"], abs=1e-6)
    # At α = 0 the encoder-only point (head of θ_bi) and the head-only point (encoder of
    # θ_bi) are two different models, neither of which is θ_src.
    zero = {s: f[f["alpha"] == 0.0].set_index("eval_lang")["score"] for s, f in rows.items()}
    src = records["src"]["dev_scores"]["en"]["score"]
    assert (zero["encoder"]["en"], zero["head"]["en"]) != (src, src)
    capsys.readouterr()
    assert main(["smoke", *_overrides(root, tmp_path)]) == 0  # all complete: nothing to run
    assert "2 complete, 0 to run" in capsys.readouterr().out


def test_convergence_tabulates_the_plateau(trained_pos_pair, tmp_path, capsys):
    root, configs, records = trained_pos_pair
    main = _script("convergence").main
    overrides = [o for o in _overrides(root, tmp_path) if not o.startswith("alphas")]
    assert main(["smoke", *overrides, "--skip-double", "--seed", "3"]) == 0
    table = pd.read_csv(tmp_path / "convergence.csv", dtype={"run_id": str})
    curves = pd.read_csv(tmp_path / "training_curves.csv", dtype={"run_id": str})
    row = table.iloc[0]
    assert row["run_id"] == configs["src"].run_hash()  # the profile's own θ_src, reused
    history = records["src"]["history"]
    assert row["best"] == pytest.approx(max(p["dev"]["en"] for p in history), abs=1e-6)
    assert row["last"] == pytest.approx(history[-1]["dev"]["en"], abs=1e-6)
    assert bool(row["on_plateau"]) == (row["best"] - row["last"] <= 0.01)
    assert len(curves) == len(history)


def test_reproduction_report_of_one_seed_says_why_it_has_no_variance():
    # Stage 1 of the reproduction (one seed) is committed: the report must still be
    # written, with the fine-tuned scores of results/finetune.csv and a note in place of
    # the variance across seeds.
    from xinterp_utils.profiles import load_profile

    report = _script("reproduction_report")
    profile = load_profile("repro", ["pairs=[en-de]", "seeds=[1]", "remedies=null"])
    text = report.report(profile)
    assert "a variance across seeds needs two seeds or more" in text
    finetune = pd.read_csv(REPO / "results" / "finetune.csv")
    pos = finetune[(finetune.task == "pos") & (finetune.seed == 1) & (finetune.model == "bi")
                   & (finetune.eval_role == "target") & (finetune.target == "de")]
    assert f"| pos | bi | target | {pos['score'].iloc[0]:.3f} |" in text


def test_committed_claims_report_is_the_report_of_the_committed_results():
    # results/claims.md is what REPRODUCTION.md quotes: it must be regenerated whenever
    # the committed results change (scripts/reproduce_offline.sh does, stage 4).
    from xinterp_utils.profiles import load_profile

    report = _script("reproduction_report")
    committed = (REPO / "results" / "claims.md").read_text()
    assert report.report(load_profile("repro")) == committed


def test_committed_remedies_report_is_the_report_of_the_committed_results():
    # REMEDIES.md holds notebook 06's tables, which REPRODUCTION.md's remedies section
    # interprets: it must be regenerated whenever the committed remedy results change.
    from xinterp_utils.profiles import load_profile

    report = _script("remedies_report")
    committed = (REPO / "REMEDIES.md").read_text()
    assert report.report(load_profile("repro"), REPO / "results") == committed


def test_variance_at_zero_compares_target_and_source_across_seeds():
    # Seed 1's committed POS en-de Eq. 1 line, and a seed 2 equal to it except at α = 0,
    # where its scores are 0.98 (source) and 0.90 (target) of seed 1's.
    from xinterp_utils.analysis import add_views, profile_rows
    from xinterp_utils.profiles import load_profile

    report = _script("reproduction_report")
    profile = load_profile("repro", ["tasks=[pos]", "pairs=[en-de]", "seeds=[1]",
                                     "remedies=null"])
    seed1 = profile_rows(profile, REPO / "results", planes=["eq1"], views=False)
    seed2 = seed1.assign(seed=2)
    at_zero = seed2["alpha"].round(6) == 0
    factor = seed2["eval_lang"].map({"en": 0.98, "de": 0.90})
    seed2.loc[at_zero, "score"] = seed2.loc[at_zero, "score"] * factor[at_zero]
    one_d = add_views(pd.concat([seed1, seed2], ignore_index=True))
    table = report.variance_at_zero(one_d, one_d[["plane", "line", "eval_role"]]
                                    .drop_duplicates()).iloc[0]
    norm = one_d[(one_d.seed == 1) & (one_d["alpha"].round(6) == 0)].set_index(
        "eval_role")["norm_score"]
    # Sample variance of a and f·a is (a - f·a)² / 2.
    expected = {role: (norm[role] * (1 - f)) ** 2 / 2
                for role, f in (("source", 0.98), ("target", 0.90))}
    assert table["var_source_at_0"] == pytest.approx(expected["source"])
    assert table["var_target_at_0"] == pytest.approx(expected["target"])
    assert table["target_over_source"] == pytest.approx(expected["target"]
                                                        / expected["source"])


def test_reproduction_report_compares_the_scopes_of_footnote_2():
    # The committed POS en-de seed 1 sweeps with only the head interpolated: the report's
    # row equals the numbers read straight from the CSV.
    from xinterp_utils.profiles import load_profile

    report = _script("reproduction_report")
    profile = load_profile("repro", ["tasks=[pos]", "pairs=[en-de]", "seeds=[1]",
                                     "remedies=null"])
    text = report.report(profile)
    head = pd.read_csv(REPO / "results/sweeps/offline/pos/en-de/seed1-head.csv")
    head = head[(head.plane == "eq1") & head.alpha.between(0, 1) & (head.eval_lang == "de")]
    span = head.score.max() - head.score.min()
    at_0 = head[head.alpha == 0].score.iloc[0]
    assert "## Footnote 2" in text
    assert f"| pos | target | head | {at_0:.4f} | {span:.4f} |" in text


def test_reproduction_report_per_target_language():
    # A second target (seed 1's German rows relabelled as Russian, the zero-shot score
    # lowered by 10 %) gets its own row with its own zero-shot value, and the report
    # prints the committed pair's rows.
    from xinterp_utils.analysis import add_views, profile_rows
    from xinterp_utils.profiles import load_profile
    from xinterp_utils.summary import one_d_summary

    report = _script("reproduction_report")
    profile = load_profile("repro", ["tasks=[pos]", "pairs=[en-de]", "seeds=[1]",
                                     "remedies=null"])
    text = report.report(profile)
    assert "## Eq. 1 per target language" in text
    de = profile_rows(profile, REPO / "results", planes=["eq1"], views=False)
    ru = de.assign(target="ru")
    hit = (ru["alpha"].round(6) == 0) & (ru["eval_lang"] == "de")
    ru.loc[hit, "score"] *= 0.9
    both = add_views(pd.concat([de, ru], ignore_index=True))
    per_pair = one_d_summary(both, by=["task", "target"]).merge(
        both[["plane", "line", "eval_role"]].drop_duplicates(), on=["plane", "line"])
    target = per_pair[per_pair["eval_role"] == "target"].set_index("target")["at_0"]
    assert target["ru"] == pytest.approx(0.9 * target["de"])
    # The report's per-pair rows of the committed pair are these.
    for row in per_pair[per_pair["target"] == "de"].itertuples():
        assert f"| pos | de | {row.eval_role} | {row.at_0:.3f} |" in text


def test_reproduction_report_tests_the_zero_shot_variance():
    # XNLI's committed seeds 1-3 of en-de, en-ru, en-zh: the zero-shot variance pooled
    # over the three targets (6 degrees of freedom) against θ_src's English variance,
    # whose three runs every pair shares (2 degrees of freedom), computed here directly.
    from scipy import stats

    from xinterp_utils.profiles import load_profile
    from xinterp_utils.summary import zero_shot_variance_tests

    report = _script("reproduction_report")
    finetune = pd.read_csv(REPO / "results" / "finetune.csv")
    xnli = finetune[(finetune.task == "xnli") & (finetune.model == "src")]
    zero_shot = xnli[xnli.eval_role == "target"].groupby("target")["score"]
    var_zero_shot = zero_shot.var().mean()  # equal seeds per target: pooled = mean
    var_source = xnli[(xnli.eval_role == "source") & (xnli.target == "de")]["score"].var()
    assert zero_shot.size().tolist() == [3, 3, 3]
    tests = zero_shot_variance_tests(finetune[finetune.task == "xnli"])
    row = tests[(tests.target == "all") & (tests.against == "θ_src on the source")].iloc[0]
    assert (row.dof_num, row.dof_den) == (6, 2)
    assert row.ratio == pytest.approx(var_zero_shot / var_source)
    assert row.p_value == pytest.approx(stats.f.sf(var_zero_shot / var_source, 6, 2))
    assert set(tests.target) == {"all", "de", "ru", "zh"}
    text = report.report(load_profile("repro", ["tasks=[xnli]", "remedies=null"]))
    assert f"| xnli | all | θ_src on the source | {var_zero_shot ** 0.5:.4f} |" in text
    # The per-target end-points: Chinese's zero-shot mean and gap, read straight from
    # the CSV (the rows are `| task | target | src_on_source | bi_on_source | ...`).
    xnli_all = finetune[finetune.task == "xnli"]
    zh = xnli_all[(xnli_all.target == "zh") & (xnli_all.eval_role == "target")]
    zero_shot_zh = zh[zh.model == "src"]["score"].mean()
    gap_zh = zh[zh.model == "bi"]["score"].mean() - zero_shot_zh
    line = next(row for row in text.splitlines() if row.startswith("| xnli | zh | 0."))
    cells = line.strip("|").split("|")
    assert float(cells[4]) == pytest.approx(zero_shot_zh, abs=5e-4)
    assert float(cells[7]) == pytest.approx(gap_zh, abs=5e-4)


@pytest.mark.parametrize("args, message", [
    (["smoke", "--only", "07"], "--only 07 matches no notebook in notebooks/"),
    (["smoke", "--only"], "--only needs notebook prefixes"),
    (["--only", "04", "--fast"], "unknown option --fast"),
])
def test_run_all_refuses_bad_options_before_any_work(args, message, tmp_path):
    # Checked before the environment, the encoders or any notebook: nothing is written.
    import subprocess

    done = subprocess.run(["bash", str(REPO / "run_all.sh"), *args], check=False,
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr
    assert "run_all: profile" not in done.stdout  # it stopped before preparing
