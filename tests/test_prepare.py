"""`xinterp prepare` fails fast and says what to do; data provenance is never silent;
`xinterp plan` sizes a profile. Hub checks talk to 127.0.0.1 only: a real local HTTP
server for "reachable", a port nobody listens on for "unreachable"."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from xinterp_utils import hub

REPO = Path(__file__).resolve().parent.parent


def _refusing_port() -> int:
    """A 127.0.0.1 port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def local_server():
    """A real HTTP server on 127.0.0.1 answering every request (HEAD: 404)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             http.server.SimpleHTTPRequestHandler)
    server.RequestHandlerClass.log_message = lambda *a: None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_probe_tells_a_local_server_from_a_refusing_port(local_server):
    start = time.perf_counter()
    assert hub.probe(local_server + "/no-such-page") is None  # an HTTP error still answers
    why = hub.probe(f"http://127.0.0.1:{_refusing_port()}")
    assert why is not None and "refused" in why.lower()
    assert time.perf_counter() - start < 2.0


def test_hub_answer_is_memoised_per_process_and_endpoint(monkeypatch, local_server):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub.forget()
    try:
        monkeypatch.setenv("HF_ENDPOINT", local_server)
        assert hub.unreachable_reason() is None
        refusing = f"http://127.0.0.1:{_refusing_port()}"
        monkeypatch.setenv("HF_ENDPOINT", refusing)
        start = time.perf_counter()
        why = hub.unreachable_reason()
        assert why is not None and refusing in why and time.perf_counter() - start < 2.0
        assert hub._ANSWERS[refusing] == why  # asked once: the answer is kept
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert "HF_HUB_OFFLINE" in hub.unreachable_reason()
    finally:
        hub.forget()


def _cli(*args, env_changes: dict, drop=()) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **env_changes}
    for key in drop:
        env.pop(key, None)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "xinterp_utils", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    return proc, time.perf_counter() - start


def _assert_says_what_to_do(proc, seconds):
    assert proc.returncode != 0
    assert seconds < 20, seconds  # interpreter start-up included; the probe takes < 2 s
    for name in ("bert-base-multilingual-cased", "xlm-roberta-large"):
        assert f"encoder {name!r} cannot be loaded" in proc.stderr
    for way in ("'offline'", "local folder", "XINTERP_DATA"):
        assert way in proc.stderr


def test_prepare_paper_offline_fails_fast_naming_encoders_and_ways_out(tmp_path):
    proc, seconds = _cli("prepare", "paper", "--figures", str(tmp_path),
                         env_changes={"HF_HUB_OFFLINE": "1"})
    _assert_says_what_to_do(proc, seconds)
    assert "HF_HUB_OFFLINE" in proc.stderr
    assert "data: the official sources" in proc.stdout  # paper names its data source
    assert not list(tmp_path.iterdir())  # nothing written: Table 1 comes after the checks


def test_prepare_paper_with_an_unreachable_endpoint_fails_fast(tmp_path):
    port = _refusing_port()
    # Every URL goes to the refusing port: the HF endpoint, and (through the proxy
    # variables) the UD downloads from GitHub. Nothing leaves 127.0.0.1.
    local = f"http://127.0.0.1:{port}"
    proc, seconds = _cli("prepare", "paper", "--figures", str(tmp_path),
                         env_changes={"HF_ENDPOINT": local, "https_proxy": local,
                                      "http_proxy": local, "HTTPS_PROXY": local,
                                      "HTTP_PROXY": local, "no_proxy": "", "NO_PROXY": "",
                                      "HF_HOME": str(tmp_path / "hf")},
                         drop=("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"))
    _assert_says_what_to_do(proc, seconds)
    assert f"127.0.0.1:{port} is unreachable" in proc.stderr
    assert "facebook/xnli" in proc.stderr and "unimelb-nlp/wikiann" in proc.stderr
    assert "UD r2.7" in proc.stderr


def test_prepare_smoke_lists_its_offline_substitutes(data_dir):
    from xinterp_utils.preflight import data_provenance, problems
    from xinterp_utils.profiles import load_profile

    profile = load_profile("smoke")
    lines = data_provenance(profile)
    assert lines[0].startswith(f"data: offline copies in {data_dir}")
    subs = [line.strip() for line in lines if line.strip().startswith("substitute:")]
    # smoke is en -> de: UD de train is the de_gsd test file, XNLI trains on its test set
    assert any(s.startswith("substitute: pos/parsing de train <- ud/de_gsd-ud-test.conllu: "
                            "official train split unavailable") for s in subs), subs
    assert {s.split(" <- ")[0] for s in subs} == {
        "substitute: pos/parsing de train", "substitute: xnli en train",
        "substitute: xnli de train"}
    assert problems(profile) == []


def test_plan_counts_smoke_and_paper(data_dir):
    from xinterp_utils.plan import plan_profile, report
    from xinterp_utils.profiles import load_profile

    smoke = plan_profile(load_profile("smoke"))
    assert smoke.runs == 4 * 1 * 1 * 3  # tasks x pairs x seeds x (src, tgt, bi)
    assert (smoke.sweeps_1d, smoke.sweeps_2d) == (4, 4)
    assert smoke.points_1d == 4 * (5 + 5 - 1)  # Eq. 1 and 2 share θ_bi at α = 1
    assert smoke.points_2d == 4 * 2 * 2
    # 128 training examples a language, 2 epochs: src 1, tgt 1, bi 2 languages a task
    assert smoke.train_examples == 4 * (1 + 1 + 2) * 128 * 2
    assert smoke.train_tokens > smoke.train_examples  # counted with the tokenizer
    assert "counted from the offline data" in smoke.data_note

    paper = load_profile("paper")
    plan = plan_profile(paper)
    pairs = paper.pair_tuples()
    langs = {lang for pair in pairs for lang in pair}
    # monolingual runs: one per language; bilingual: one per pair
    per_cell = len(langs) + len(pairs)
    assert plan.runs == len(paper.encoders) * len(paper.tasks) * len(paper.seeds) * per_cell
    n_sweeps = len(paper.encoders) * len(paper.tasks) * len(pairs) * len(paper.seeds)
    assert plan.sweeps_1d == plan.sweeps_2d == n_sweeps
    assert plan.points_1d == n_sweeps * (2 * len(paper.alphas_1d) - 1)
    assert plan.points_2d == n_sweeps * len(paper.alphas_2d) ** 2
    assert "hub data" in plan.data_note
    assert plan.gpu_hours is not None and plan.gpu_hours > 0
    text = "\n".join(report(plan))
    assert "6 x parameters" in text and "0.35" in text and "790" in text
    # GPU-hours scale inversely with the assumed utilisation
    from xinterp_utils.plan import Assumptions

    half = plan_profile(paper, Assumptions(mfu=0.175))
    assert half.gpu_hours == pytest.approx(2 * plan.gpu_hours)


def test_no_run_folder_when_the_encoder_or_the_data_fail(tmp_path, data_dir):
    from xinterp_utils.config import TrainConfig
    from xinterp_utils.encoders import resolve_encoder
    from xinterp_utils.train import train

    # an encoder folder with config and tokenizer but no weights
    small = resolve_encoder("offline-small")
    broken = tmp_path / "broken-encoder"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json"):
        (broken / name).write_bytes((small / name).read_bytes())
    root = tmp_path / "ckpt"
    with pytest.raises(OSError):
        train(TrainConfig(str(broken), "ner", ("en",), max_train_examples=8), root,
              progress=False)
    assert not root.exists()
    # data without the split asked for
    empty = tmp_path / "data"
    empty.mkdir()
    (empty / "manifest.json").write_text('{"format_version": 1}')
    with pytest.raises(LookupError, match="no entry wikiann.en"):
        train(TrainConfig("offline-small", "ner", ("en",), data_source=str(empty),
                          max_train_examples=8), root, progress=False)
    assert not root.exists()
