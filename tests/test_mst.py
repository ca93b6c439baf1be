"""Chu-Liu-Edmonds with a single ROOT child, checked against brute force."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
import torch

from xinterp_utils import mst


def _is_single_root_tree(heads: tuple[int, ...]) -> bool:
    n = len(heads) - 1
    if sum(1 for d in range(1, n + 1) if heads[d] == 0) != 1:
        return False
    for d in range(1, n + 1):
        v, steps = d, 0
        while v != 0 and steps <= n:
            if heads[v] == v:
                return False
            v, steps = heads[v], steps + 1
        if v != 0:
            return False
    return True


def _brute_force(scores: np.ndarray) -> tuple[np.ndarray, float]:
    """Best single-root tree by enumerating every head assignment."""
    n = scores.shape[0] - 1
    best, best_score = None, -np.inf
    for assignment in itertools.product(range(n + 1), repeat=n):
        heads = (-1, *assignment)
        if not _is_single_root_tree(heads):
            continue
        score = sum(scores[d, heads[d]] for d in range(1, n + 1))
        if score > best_score:
            best, best_score = heads, score
    return np.array(best), best_score


def _score(scores: np.ndarray, heads: np.ndarray) -> float:
    n = scores.shape[0] - 1
    return float(scores[np.arange(1, n + 1), heads[1:]].sum())


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_on_random_scores(seed):
    rng = np.random.default_rng(seed)
    for trial in range(25):
        n = int(rng.integers(1, 6)) if trial else 5
        scale = float(rng.choice([0.1, 1.0, 30.0]))
        scores = rng.normal(size=(n + 1, n + 1)) * scale
        if trial % 3 == 0:  # favour ROOT so that greedy heads pick several root children
            scores[:, 0] += 2 * scale
        heads = mst.chu_liu_edmonds(scores)
        expected, expected_score = _brute_force(scores)
        assert heads[0] == -1
        np.testing.assert_array_equal(heads, expected)
        assert _score(scores, heads) == pytest.approx(expected_score)


def test_six_words_against_brute_force():
    rng = np.random.default_rng(123)
    scores = rng.normal(size=(7, 7))
    heads = mst.chu_liu_edmonds(scores)
    expected, expected_score = _brute_force(scores)
    np.testing.assert_array_equal(heads, expected)
    assert _score(scores, heads) == pytest.approx(expected_score)


def test_greedy_cycle_is_broken():
    # Greedy: 1 <- 2 and 2 <- 1 (a cycle), 3 <- 2. Best tree: 0 -> 2 -> 1, 2 -> 3.
    scores = np.full((4, 4), -10.0)
    scores[1, 2] = 5.0
    scores[2, 1] = 5.0
    scores[3, 2] = 4.0
    scores[1, 0] = 1.0
    scores[2, 0] = 2.0
    scores[3, 0] = 0.0
    greedy = scores[1:].argmax(axis=1)
    assert greedy[0] == 2 and greedy[1] == 1  # the cycle really is there
    np.testing.assert_array_equal(mst.chu_liu_edmonds(scores), [-1, 2, 0, 2])


def test_greedy_two_roots_become_one():
    # Every word prefers ROOT; the single-root constraint keeps only the best root child.
    scores = np.zeros((4, 4))
    scores[1:, 0] = [3.0, 5.0, 4.0]
    scores[1, 3] = 1.0
    scores[3, 2] = 2.0
    scores[1, 2] = 0.5
    heads = mst.chu_liu_edmonds(scores)
    np.testing.assert_array_equal(heads, [-1, 3, 0, 2])
    assert np.count_nonzero(heads[1:] == 0) == 1


def test_single_word_and_bad_input():
    np.testing.assert_array_equal(mst.chu_liu_edmonds(np.zeros((2, 2))), [-1, 0])
    with pytest.raises(ValueError, match="square"):
        mst.chu_liu_edmonds(np.zeros((3, 4)))
    bad = np.zeros((3, 3))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        mst.chu_liu_edmonds(bad)


def test_per_sentence_function_is_picklable():
    assert pickle.loads(pickle.dumps(mst.chu_liu_edmonds)) is mst.chu_liu_edmonds


def _random_batch(seed: int, lengths: list[int], num_rels: int = 5):
    gen = torch.Generator().manual_seed(seed)
    w = max(lengths) + 1
    arc = torch.randn(len(lengths), w, w, generator=gen) * 3
    rel = torch.randn(len(lengths), w, w, num_rels, generator=gen)
    mask = torch.arange(w)[None, :] <= torch.tensor(lengths)[:, None]
    return arc, rel, mask


def test_decode_batch_equals_per_sentence_search():
    lengths = [4, 1, 5, 3]
    arc, rel, mask = _random_batch(0, lengths)
    # Make sentence 3's greedy heads a valid tree, to exercise the fast path.
    arc[3] = -5.0
    arc[3, 1, 0], arc[3, 2, 1], arc[3, 3, 1] = 5.0, 5.0, 5.0
    for b in (0, 2):  # and force a greedy cycle 1 <-> 2 in sentences 0 and 2
        arc[b, 1, 2] = arc[b, 2, 1] = 30.0
    calls = []

    def recording_map(fn, items):
        items = list(items)
        calls.append(len(items))
        return map(fn, items)

    heads, rels = mst.decode(arc, rel, mask, map_fn=recording_map)
    assert heads.shape == rels.shape == (4, 6)
    arc_lp = torch.log_softmax(
        arc.masked_fill(~mask[:, None, :], float("-inf")).masked_fill(
            torch.eye(6, dtype=torch.bool), float("-inf")
        ),
        dim=-1,
    )
    rel_lp, best_rel = torch.log_softmax(rel, dim=-1).max(dim=-1)
    total = (arc_lp + rel_lp).double().numpy()
    for b, n in enumerate(lengths):
        expected = mst.chu_liu_edmonds(total[b, : n + 1, : n + 1])
        np.testing.assert_array_equal(heads[b, 1 : n + 1], expected[1:])
        np.testing.assert_array_equal(
            rels[b, 1 : n + 1], best_rel[b, np.arange(1, n + 1), expected[1:]].numpy()
        )
        assert heads[b, 0] == -100 and (heads[b, n + 1 :] == -100).all()
        assert rels[b, 0] == -100 and (rels[b, n + 1 :] == -100).all()
    np.testing.assert_array_equal(heads[3, 1:4], [0, 1, 1])
    assert calls == [2]  # only sentences 0 and 2 needed the search (1 has one word)


def test_decode_rejects_bad_shapes():
    arc, rel, mask = _random_batch(1, [2, 3])
    with pytest.raises(ValueError, match="rel_scores"):
        mst.decode(arc, rel[:, :, :2], mask)
    holes = mask.clone()
    holes[0, 1] = False
    with pytest.raises(ValueError, match="prefix"):
        mst.decode(arc, rel, holes)
