"""Maximum spanning dependency trees: Chu-Liu-Edmonds with exactly one child of ROOT.

Convention everywhere in this module: ``scores[d, h]`` is the score of the arc
``h -> d`` (head ``h`` governs dependent ``d``), rows are dependents and columns are
heads, and node 0 is ROOT. This matches the parser head's ``arc_scores[b, d, h]``, whose
softmax runs over the last axis.

The UD constraint (one word attached to ROOT) is enforced with Gabow & Tarjan's (1984)
penalty: subtracting a constant M from every ROOT arc lowers a tree with k ROOT children
by k*M, so once M exceeds the largest possible difference between two tree scores the
unconstrained maximum spanning tree of the penalised graph is the best single-root tree
of the original one (Zmigrod, Vieira & Cotterell 2020 discuss this and faster variants).
One Chu-Liu-Edmonds run therefore suffices instead of one per candidate root child.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch


def _find_cycle(heads: list[int]) -> list[int] | None:
    """Return the nodes of one cycle of the head graph (ROOT = node 0 excluded), or None."""
    m = len(heads)
    state = [0] * m  # 0 unseen, 1 on the current walk, 2 known to reach ROOT
    state[0] = 2
    for start in range(1, m):
        if state[start]:
            continue
        path = []
        v = start
        while state[v] == 0:
            state[v] = 1
            path.append(v)
            v = heads[v]
        if state[v] == 1:
            return path[path.index(v):]
        for p in path:
            state[p] = 2
    return None


def _cle(scores: np.ndarray) -> np.ndarray:
    """Unconstrained maximum spanning arborescence rooted at 0 of a dense `scores[d, h]`.

    Row 0 and the diagonal must be -inf; every other row must hold a finite ROOT arc so
    that a tree always exists. Returns heads of all nodes (entry 0 is meaningless).
    """
    heads = scores.argmax(axis=1)
    cycle = _find_cycle(heads.tolist())
    if cycle is None:
        return heads
    in_cycle = np.zeros(len(heads), dtype=bool)
    in_cycle[cycle] = True
    cyc = np.flatnonzero(in_cycle)
    rest = np.flatnonzero(~in_cycle)  # rest[0] == 0: ROOT is never on a cycle
    k = len(rest)

    # Contract the cycle into node k of a (k+1)-node graph.
    contracted = np.full((k + 1, k + 1), -np.inf)
    rest_rows = scores[rest]
    contracted[:k, :k] = rest_rows[:, rest]
    out_of_cycle = rest_rows[:, cyc]  # rest dependent <- cycle head
    best_head = out_of_cycle.argmax(axis=1)
    contracted[:k, k] = out_of_cycle[np.arange(k), best_head]
    # Entering the cycle at d breaks d's cycle arc: gain relative to keeping it.
    into_cycle = scores[cyc][:, rest] - scores[cyc, heads[cyc]][:, None]
    best_dep = into_cycle.argmax(axis=0)
    contracted[k, :k] = into_cycle[best_dep, np.arange(k)]
    contracted[0, :] = -np.inf

    sub = _cle(contracted)

    # Expand: cycle nodes keep their cycle heads except the one the winning arc enters.
    result = heads.copy()
    sub_rest = sub[1:k]
    from_cycle = sub_rest == k
    result[rest[1:]] = np.where(from_cycle, cyc[best_head[1:]], rest[np.minimum(sub_rest, k - 1)])
    entry = sub[k]
    result[cyc[best_dep[entry]]] = rest[entry]
    return result


def _is_single_root_tree(heads: np.ndarray) -> bool:
    """True when `heads` (entry 0 ignored) is acyclic with exactly one child of ROOT."""
    if np.count_nonzero(heads[1:] == 0) != 1:
        return False
    return _find_cycle([0, *heads[1:].tolist()]) is None


def chu_liu_edmonds(scores: np.ndarray) -> np.ndarray:
    """Return the best dependency tree with exactly one word attached to ROOT.

    `scores` is a finite float array of shape (n+1, n+1) with ``scores[d, h]`` the score
    of arc h -> d and node 0 = ROOT; row 0 (arcs into ROOT) and the diagonal are ignored.
    Returns an int64 array of length n+1: ``heads[d]`` in 0..n for words d = 1..n and
    ``heads[0] = -1``. The tree maximises the sum of its arcs' scores.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1] or scores.shape[0] < 2:
        raise ValueError(
            f"chu_liu_edmonds: scores must be square (n+1, n+1) with n >= 1, got {scores.shape}"
        )
    m = scores.shape[0]
    arcs = scores[1:].copy()
    arcs[np.arange(m - 1), np.arange(1, m)] = 0.0  # self-loops are never used: ignore them
    if not np.isfinite(arcs).all():
        raise ValueError("chu_liu_edmonds: scores of candidate arcs must be finite")
    work = scores.copy()
    work[np.arange(m), np.arange(m)] = -np.inf
    work[0, :] = -np.inf

    greedy = work.argmax(axis=1)
    if _is_single_root_tree(greedy):  # each word's best head already forms a valid tree
        greedy[0] = -1
        return greedy.astype(np.int64)

    finite = work[1:][np.isfinite(work[1:])]
    # Any two trees differ by less than n * (max - min); a larger penalty per ROOT arc
    # makes a single-root tree beat every tree with two or more ROOT children.
    penalty = (m - 1) * float(finite.max() - finite.min()) + 1.0
    work[1:, 0] -= penalty
    heads = _cle(work)
    heads[0] = -1
    return heads.astype(np.int64)


def _tree_mask(heads: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per sentence: True when greedy `heads` [B, W] (valid words only) form a single-root tree."""
    w = heads.shape[1]
    words = valid.clone()
    words[:, 0] = False
    ptr = torch.where(words, heads, torch.zeros_like(heads))
    # Pointer doubling: after ceil(log2 W) + 1 jumps every word of an acyclic graph is at ROOT.
    for _ in range(max(1, int(np.ceil(np.log2(max(w, 2))))) + 1):
        ptr = torch.gather(ptr, 1, ptr)
    acyclic = (ptr == 0).all(dim=1)
    one_root = ((heads == 0) & words).sum(dim=1) == 1
    return acyclic & one_root


def decode(
    arc_scores: torch.Tensor,
    rel_scores: torch.Tensor,
    word_mask: torch.Tensor,
    *,
    map_fn: Callable[[Callable, Iterable], Iterable] = map,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode a batch of sentences into well-formed single-root trees and relations.

    `arc_scores` [B, W, W] (``[b, d, h]``, raw logits), `rel_scores` [B, W, W, R] (raw
    logits of relation r for arc h -> d), `word_mask` [B, W] bool (True for ROOT in column
    0 and the real words, a prefix of each row). Arcs are scored by
    ``log P(h | d) + max_r log P(r | d, h)`` (both softmaxes local, as in the biaffine
    parser), the best single-root tree is found per sentence with `chu_liu_edmonds`, and
    each word takes the best relation for its chosen head. Sentences whose greedy heads
    already form such a tree skip the search. `map_fn` maps the per-sentence decoder over
    the sentences that need it (pass a worker pool's `map` to parallelise).

    Returns ``(heads, rels)``, int64 numpy arrays [B, W]: head indices 0..W-1 and relation
    ids, with -100 in column 0 and on padding (the gold batch convention).
    """
    if arc_scores.dim() != 3 or arc_scores.shape[1] != arc_scores.shape[2]:
        raise ValueError(f"decode: arc_scores must be [B, W, W], got {tuple(arc_scores.shape)}")
    b, w, _ = arc_scores.shape
    if rel_scores.dim() != 4 or tuple(rel_scores.shape[:3]) != (b, w, w):
        raise ValueError(
            "decode: rel_scores must be [B, W, W, R] matching arc_scores"
            f" {tuple(arc_scores.shape)}, got {tuple(rel_scores.shape)}"
        )
    if tuple(word_mask.shape) != (b, w):
        raise ValueError(
            f"decode: word_mask must be [B, W] = {(b, w)}, got {tuple(word_mask.shape)}"
        )
    mask = word_mask.bool().to(arc_scores.device)
    if not mask[:, 0].all() or (mask[:, 1:] & ~mask[:, :-1]).any():
        raise ValueError("decode: word_mask must be True in column 0 and a prefix of each row")

    with torch.no_grad():
        arc = arc_scores.float().masked_fill(~mask[:, None, :], float("-inf"))
        eye = torch.eye(w, dtype=torch.bool, device=arc.device)
        arc = arc.masked_fill(eye, float("-inf"))
        arc_lp = torch.log_softmax(arc, dim=-1)
        # max_r log_softmax(r) = max_r r − logsumexp_r r: two reductions instead of a full
        # [B, W, W, R] log-softmax tensor (the largest cost of decoding a sweep point).
        rel = rel_scores.float()
        rel_max, best_rel = rel.max(dim=-1)
        rel_lp = rel_max - torch.logsumexp(rel, dim=-1)
        total = arc_lp + rel_lp  # [B, W(dep), W(head)], -inf on invalid heads
        greedy = total.argmax(dim=-1)
        done = _tree_mask(greedy, mask)
        heads = greedy.clone()

        lengths = mask.sum(dim=1).tolist()
        todo = [i for i in range(b) if not done[i] and lengths[i] > 1]
        if todo:
            total_np = total.cpu().numpy().astype(np.float64)
            mats = [total_np[i, : lengths[i], : lengths[i]] for i in todo]
            for i, tree in zip(todo, map_fn(chu_liu_edmonds, mats), strict=True):
                heads[i, 1 : lengths[i]] = torch.from_numpy(tree[1:]).to(heads.device)

        words = mask.clone()
        words[:, 0] = False
        rels = torch.gather(best_rel, 2, heads.clamp(min=0, max=w - 1)[..., None])[..., 0]
        heads = heads.masked_fill(~words, -100)
        rels = rels.masked_fill(~words, -100)
    return heads.cpu().numpy().astype(np.int64), rels.cpu().numpy().astype(np.int64)
