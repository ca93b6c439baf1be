"""Profiles are data; overrides change exactly the named fields; bad input names the field."""

import dataclasses

import pytest

from xinterp_utils.profiles import (
    PAPER_ALPHAS_1D,
    PAPER_ALPHAS_2D,
    available_profiles,
    load_profile,
    parse_override,
)


def test_bundled_profiles_load():
    assert available_profiles() == ["demo", "paper", "repro", "smoke"]
    for name in available_profiles():
        profile = load_profile(name)
        assert profile.name == name
        assert profile.pair_tuples()


def test_paper_grid_matches_the_paper():
    # −0.5 … 1.5 in 0.1 steps (21 points) plus the twelve extra points near 0 and 1.
    assert len(PAPER_ALPHAS_1D) == 33
    assert {0.025, 0.975, -0.5, 1.5, 0.0, 1.0} <= set(PAPER_ALPHAS_1D)
    assert len(PAPER_ALPHAS_2D) == 21 and PAPER_ALPHAS_2D[0] == -0.5 and PAPER_ALPHAS_2D[-1] == 1.5
    paper = load_profile("paper")
    assert paper.alphas_1d == list(PAPER_ALPHAS_1D)
    assert paper.encoders == ["bert-base-multilingual-cased", "xlm-roberta-large"]
    assert ("en", "ar") in paper.pair_tuples() and ("ar", "zh") in paper.pair_tuples()
    assert ("ar", "en") not in paper.pair_tuples()
    assert len(paper.pairs) == 15 and paper.seeds == [1, 2, 3]
    assert (paper.lr, paper.epochs, paper.batch_size, paper.max_length) == (2e-5, 5, 32, 128)


def test_overrides_from_strings_and_fields():
    profile = load_profile("smoke", ["seeds=[3, 4]", "pairs=en-ru", "lr=0.001"], epochs=2, tasks=None)
    assert profile.seeds == [3, 4]
    assert profile.pairs == ["en-ru"]
    assert profile.lr == 0.001 and profile.epochs == 2
    assert profile.tasks == load_profile("smoke").tasks  # None keeps the profile's value
    assert parse_override("max_train_examples=null") == ("max_train_examples", None)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("bogus=1", "bogus"),
        ("tasks=[xnli, chunking]", "chunking"),
        ("pairs=[en-en]", "same source and target"),
        ("pairs=[en-xx]", "en-xx"),
        ("scope=everything", "scope"),
        ("epochs=0", "epochs"),
        ("seeds", "key=value"),
    ],
)
def test_bad_overrides_name_the_field(override, needle):
    with pytest.raises(ValueError, match=needle):
        load_profile("smoke", [override])


def test_unknown_profile():
    with pytest.raises(ValueError, match="available"):
        load_profile("nonexistent")


def test_seeds_2d_limits_the_2d_sweeps_and_is_validated():
    from xinterp_utils.sweep_spec import plan_sweeps

    cfg = load_profile("repro")
    assert cfg.seeds == [1, 2, 3] and cfg.seeds_2d == [1]
    two_d = plan_sweeps(cfg, two_d=True)
    one_d = plan_sweeps(cfg, two_d=False)
    assert {s.seed for s in two_d} == {1} and {(s.source, s.target) for s in two_d} == {
        ("en", "de")}
    n_tasks = len(cfg.tasks)
    assert len(two_d) == n_tasks and len(one_d) == n_tasks * 3 * 3  # × pairs × seeds
    assert len(load_profile("repro", ["seeds_2d=all"]).seeds_2d_list()) == 3
    with pytest.raises(ValueError, match="seeds_2d"):
        load_profile("repro", ["seeds_2d=[4]"])


def test_default_profile_is_demo_without_gpu_or_hub(monkeypatch):
    import torch

    from xinterp_utils.profiles import default_profile, hub_reachable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_reachable() is False  # switched off: no network call is made
    name, reason = default_profile()
    assert name == "demo"
    assert ("no GPU" in reason) if not torch.cuda.is_available() else ("hub" in reason)


def test_default_profile_command_prints_the_name(capsys, monkeypatch):
    from xinterp_utils.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["default-profile"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "demo" and "so the demo profile" in err


@pytest.mark.parametrize(
    ("override", "field", "value", "why"),
    [
        ("seeds=[1, x]", "seeds", "[1, 'x']", "seed 'x' is not an integer"),
        ("seeds=[1, 2.5]", "seeds", "[1, 2.5]", "seed 2.5 is not an integer"),
        ("seeds=[true]", "seeds", "[True]", "seed True is not an integer"),
        ("seeds_2d=[x]", "seeds_2d", "['x']", "seed 'x' is not an integer"),
        ("lr=-1", "lr", "-1", "must be a number > 0"),
        ("lr=0", "lr", "0", "must be a number > 0"),
        ("lr=2e-5", "lr", "'2e-5'", "YAML reads 2e-5 as text"),
        ("lr=.nan", "lr", "nan", "must be a number"),
        ("warmup_ratio=1", "warmup_ratio", "1", "must be a number < 1"),
        ("warmup_ratio=-0.1", "warmup_ratio", "-0.1", "must be a number >= 0"),
        ("epochs=0", "epochs", "0", "must be an integer >= 1"),
        ("epochs=1.5", "epochs", "1.5", "must be an integer"),
        ("batch_size=0", "batch_size", "0", "must be an integer >= 1"),
        ("batch_size=true", "batch_size", "True", "must be an integer"),
        ("max_length=-3", "max_length", "-3", "must be an integer >= 1"),
        ("max_train_examples=0", "max_train_examples", "0", "must be an integer >= 1"),
        ("max_train_examples=many", "max_train_examples", "'many'", "integer or null"),
        ("max_dev_examples=-1", "max_dev_examples", "-1", "must be an integer >= 1"),
        ("alphas_1d=[0, x]", "alphas_1d", "[0, 'x']", "list of (finite) numbers"),
        ("alphas_2d=[0, true]", "alphas_2d", "[0, True]", "list of (finite) numbers"),
        ("alphas_2d=[]", "alphas_2d", "[]", "non-empty list"),
    ],
)
def test_numeric_and_seed_overrides_are_checked_naming_field_and_value(override, field, value,
                                                                       why):
    with pytest.raises(ValueError) as info:
        load_profile("smoke", [override])
    message = str(info.value)
    assert f"{field}={value}:" in message and why in message, message


def test_valid_numeric_overrides_pass():
    cfg = load_profile("smoke", ["lr=2.0e-5", "warmup_ratio=0", "max_train_examples=null",
                                 "max_dev_examples=1", "epochs=1", "alphas_1d=[0, 0.5, 1]"])
    assert (cfg.lr, cfg.warmup_ratio, cfg.max_train_examples) == (2e-5, 0, None)


def _encoder_folder(tmp_path, *files):
    folder = tmp_path / "my-encoder"
    folder.mkdir()
    for name in files:
        (folder / name).write_text("{}")
    return folder


@pytest.mark.parametrize(
    ("files", "why"),
    [
        (None, "no such folder"),
        (("tokenizer.json",), "has no config.json"),
        (("config.json", "model.safetensors"), "has no tokenizer files"),
    ],
)
@pytest.mark.parametrize("command", ["profile", "prepare"])
def test_bad_encoder_folder_is_refused_by_profile_and_prepare(tmp_path, capsys, files, why,
                                                              command):
    from xinterp_utils import cli

    folder = tmp_path / "my-encoder" if files is None else _encoder_folder(tmp_path, *files)
    status = cli.main([command, "smoke", f"encoders=[{folder}]", *(
        ["--figures", str(tmp_path / "fig")] if command == "prepare" else [])])
    err = capsys.readouterr().err
    assert status == 2
    assert f"xinterp {command}: error:" in err and "encoders=" in err
    assert str(folder) in err and why in err
    assert not (tmp_path / "fig").exists()  # refused before any work


def test_offline_hub_and_complete_folder_encoders_pass(tmp_path):
    folder = _encoder_folder(tmp_path, "config.json", "tokenizer.json")
    names = ("offline, offline-small, bert-base-multilingual-cased, "
             f"FacebookAI/xlm-roberta-large, {folder}")
    cfg = load_profile("smoke", [f"encoders=[{names}]"])
    assert cfg.encoders[-1] == str(folder)
    with pytest.raises(ValueError, match=r"encoders=.*'\./typo/enc'.*no such folder"):
        load_profile("smoke", ["encoders=[./typo/enc]"])


def test_profile_training_settings_are_trainconfig_fields():
    import dataclasses

    from xinterp_utils.config import TrainConfig
    from xinterp_utils.profiles import PROFILE_SETTINGS, Profile

    train = {f.name: f for f in dataclasses.fields(TrainConfig)}
    profile = {f.name: f for f in dataclasses.fields(Profile)}
    for name in PROFILE_SETTINGS:
        assert (profile[name].type, profile[name].default) == (
            train[name].type, train[name].default), name
    bare = Profile(name="bare", encoders=["offline"], tasks=["pos"], pairs=["en-de"],
                   seeds=[1])
    config = TrainConfig("offline", "pos", ("en",), 1, **bare.train_hparams("pos"))
    assert config == TrainConfig("offline", "pos", ("en",), 1)


def test_demo_retrains_a_committed_cell_of_the_reproduction():
    # The README promises that the demo's three models are the reproduction's own (same
    # settings, same run ids), so a new user can compare their numbers with results/.
    import pandas as pd

    from xinterp_utils.config import pair_configs
    from xinterp_utils.paths import repo_root

    demo, repro = load_profile("demo"), load_profile("repro")
    committed = pd.read_csv(repo_root() / "results" / "finetune.csv", dtype={"run_id": str})
    for task in demo.tasks:
        for source, target in demo.pair_tuples():
            for seed in demo.seeds:
                ids = {name: {role: c.run_hash() for role, c in pair_configs(
                    p.encoders[0], task, source, target, seed,
                    **p.train_hparams(task)).items()} for name, p in (("demo", demo),
                                                                      ("repro", repro))}
                assert ids["demo"] == ids["repro"]
                cell = committed[(committed["task"] == task) & (committed["seed"] == seed)
                                 & (committed["source"] == source)
                                 & (committed["target"] == target)]
                assert set(cell["run_id"]) == set(ids["demo"].values())


def test_a_base_profile_gives_every_field_the_file_does_not_set(tmp_path, monkeypatch):
    from xinterp_utils import profiles

    (tmp_path / "parent.yaml").write_text(
        "encoders: [offline]\ntasks: [pos, ner]\npairs: [en-de]\nseeds: [1, 2]\nlr: 5.0e-5\n")
    (tmp_path / "child.yaml").write_text("base: parent\nseeds: [3]\n")
    (tmp_path / "grandchild.yaml").write_text("base: child\ntasks: [pos]\n")
    monkeypatch.setattr(profiles, "PROFILE_DIR", tmp_path)
    child = load_profile("child")
    assert (child.tasks, child.seeds, child.lr) == (["pos", "ner"], [3], 5.0e-5)
    grandchild = load_profile("grandchild", ["lr=1.0e-4"])
    assert (grandchild.tasks, grandchild.seeds, grandchild.lr) == (["pos"], [3], 1e-4)
    assert grandchild.name == "grandchild"


def test_bad_base_profiles_are_refused_naming_the_file(tmp_path, monkeypatch):
    from xinterp_utils import profiles

    monkeypatch.setattr(profiles, "PROFILE_DIR", tmp_path)
    (tmp_path / "orphan.yaml").write_text("base: nowhere\n")
    with pytest.raises(ValueError, match=r"unknown profile 'nowhere' \(the base of 'orphan'\)"):
        load_profile("orphan")
    (tmp_path / "a.yaml").write_text("base: b\n")
    (tmp_path / "b.yaml").write_text("base: a\n")
    with pytest.raises(ValueError, match=r"a\.yaml: `base` profiles form a cycle: a -> b -> a"):
        load_profile("a")
    (tmp_path / "parent.yaml").write_text("encoders: [offline]\ntypo_field: 1\n")
    (tmp_path / "child.yaml").write_text("base: parent\ntasks: [pos]\n")
    with pytest.raises(ValueError, match=r"parent\.yaml: unknown profile field 'typo_field'"):
        load_profile("child")


def test_demo_is_repro_with_a_smaller_grid():
    demo, repro = load_profile("demo"), load_profile("repro")
    differ = {f.name for f in dataclasses.fields(demo)
              if getattr(demo, f.name) != getattr(repro, f.name)}
    assert differ == {"name", "tasks", "pairs", "seeds", "alphas_1d", "alphas_2d", "pairs_2d",
                      "seeds_2d", "remedies", "checkpoints", "results", "figures"}
