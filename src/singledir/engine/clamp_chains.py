"""The channel plan's per-mask work: each mask's first mixing stage reached
incrementally, then its remaining stages channel-sparse (:mod:`singledir.engine.clamp_plan`
describes the identities; :class:`~singledir.engine.clamp_plan.ClampPlan` calls these
once per group of masks that start at the same layer, per chunk of examples).

Two ways:

- :func:`readout`: masks that touch only the layer feeding the network's final Linear
  (no stage between them mixes channels): all their logits from one batched matrix
  product over masks.
- :func:`per_mask`: everything else, one mask at a time. Consecutive masks whose
  pre-activations follow from each other (a cumulative curve) form a *chain* that lives
  in one buffer, updated in place (:func:`plan_chains`). Its output channels are ordered
  by when they stop being needed (the next perturbed layer ablates them,
  :func:`chain_order`), so each mask's needed channels are a suffix of the buffer: a view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch

from singledir.engine.clamp_stages import Workspace, mix_flops, select_channels, transpose_into

# Relative cost of copying one (B, n) activation compared with one unit of a
# (B, |units|, n) matrix product, for choosing how to reach a mask's pre-activation.
_GATHER_COST = 8


@dataclass
class MaskSet:
    """The masks of one evaluation and what every per-mask step applies them with."""

    keep_np: dict[str, np.ndarray]  # per perturbed layer, (U, C) bool on the host: planning
    keep_t: dict[str, torch.Tensor]  # the same on the device: clamping
    fill: dict[str, torch.Tensor]  # per perturbed layer, (1, *activation shape): the clamp values
    score: Callable  # score(logits (G, B, K), labels, mask indices): adds loss and hits per mask
    cdtype: torch.dtype | None  # operand dtype of the mixing products (bfloat16), None: float32
    workspace: Workspace


@dataclass
class FirstMix:
    """The first mixing stage ``j`` after start layer ``s``, on one chunk of examples."""

    s: int
    j: int
    d: torch.Tensor  # T(h) - T(fill) at stage j's input: what each unit adds to its pre-activation
    pre_full: torch.Tensor  # stage j's output with nothing of layer s ablated (B, C_out, ...)
    pre_empty: torch.Tensor  # the same with every unit of layer s ablated, one example (1, C_out, ...)
    yb: torch.Tensor  # the chunk's labels


class MaskPlan(NamedTuple):
    """How one mask reaches its pre-activation at the first mixing stage:
    base - A_nobias(d[:, idx] * sign), where base is 'full', 'empty' or 'prev' (the
    previous mask's, same chain); ``needed``: the output channels the next perturbed
    layer keeps (None: all)."""

    mask: int
    base: str
    idx: np.ndarray
    sign: np.ndarray
    needed: np.ndarray | None


def choose_base(R: np.ndarray, prev_R: np.ndarray | None) -> tuple[str, np.ndarray, np.ndarray]:
    """How to reach a mask's first pre-activation: from 'full', 'empty' or 'prev'.

    Returns (base, unit indices, signs): the pre-activation is
    base - A_nobias(d[:, idx] * sign). Starting from 'full' or 'empty' costs a copy of
    the base; continuing from the previous mask (same chain) updates it in place.
    """
    removed = np.flatnonzero(R)
    kept = np.flatnonzero(~R)
    best = ("full", removed, np.ones(len(removed), np.float32), len(removed) + _GATHER_COST)
    if len(kept) + _GATHER_COST < best[3]:
        best = ("empty", kept, -np.ones(len(kept), np.float32), len(kept) + _GATHER_COST)
    if prev_R is not None:
        add = np.flatnonzero(R & ~prev_R)
        sub = np.flatnonzero(prev_R & ~R)
        if len(add) + len(sub) <= best[3]:
            best = ("prev", np.concatenate([add, sub]),
                    np.concatenate([np.ones(len(add), np.float32), -np.ones(len(sub), np.float32)]), 0)
    return best[:3]


def readout(weight: torch.Tensor, first: FirstMix, keep_L: np.ndarray, group: np.ndarray, masks: MaskSet,
            max_rows: int) -> float:
    """Masks that touch only the last perturbed layer, which feeds the final Linear
    (``weight``, (K, C)): all their logits from one batched matrix product over masks;
    returns its FLOPs. ``keep_L``: the layer's (U, C) masks; ``group``: the masks'
    indices."""
    W = weight
    d, logits_full, logits_empty = first.d, first.pre_full, first.pre_empty
    device = d.device
    B, K = logits_full.shape
    plans, prev = [], None
    for m in group:
        R = ~keep_L[m]
        base, idx, sign = choose_base(R, prev)
        plans.append((base, idx, sign))
        prev = R
    flops = 0.0
    budget = max(1, max_rows * 64)  # elements of the gathered (G, B, r) block
    g0, last = 0, None
    while g0 < len(group):
        r = max(1, len(plans[g0][1]))
        g1 = g0 + 1
        while g1 < len(group) and (g1 - g0 + 1) * B * max(r, len(plans[g1][1]), 1) <= budget:
            r = max(r, len(plans[g1][1]), 1)
            g1 += 1
        G = g1 - g0
        idx = np.zeros((G, r), np.int64)
        sign = np.zeros((G, r), np.float32)
        for g in range(G):
            _, ix, sg = plans[g0 + g]
            idx[g, :len(ix)], sign[g, :len(sg)] = ix, sg
        idx_t = torch.as_tensor(idx, device=device)
        D = d.index_select(1, idx_t.view(-1)).view(B, G, r).transpose(0, 1)  # (G, B, r)
        Wg = (W.index_select(1, idx_t.view(-1)).view(K, G, r) * torch.as_tensor(sign, device=device))
        Wg = Wg.permute(1, 2, 0)  # (G, r, K)
        if masks.cdtype is not None:
            inc = torch.bmm(D.to(masks.cdtype), Wg.to(masks.cdtype)).float()
        else:
            inc = torch.bmm(D, Wg)
        flops += 2.0 * B * K * sum(len(plans[g0 + g][1]) for g in range(G))
        out = torch.empty(G, B, K, device=device)
        for g in range(G):
            base = plans[g0 + g][0]
            ref = logits_full if base == "full" else (logits_empty if base == "empty" else last)
            out[g] = ref - inc[g]
            last = out[g]
        masks.score(out, first.yb, group[g0:g1])
        last = out[G - 1].clone()
        g0 = g1
    return flops


def plan_chains(keep_L: np.ndarray, keep_P: np.ndarray | None, group: np.ndarray) -> list[list[MaskPlan]]:
    """Each mask's :class:`MaskPlan`, split into chains (a chain starts at every mask
    that does not continue from the previous one). ``keep_L``: the start layer's (U, C)
    masks; ``keep_P``: those of the perturbed layer that clamps the first mixing stage's
    output (None: none does). A mask continues the previous one only where it needs no
    output channel that the previous one did not."""
    plans, prev_R, prev_N = [], None, None
    for m in group:
        R = ~keep_L[m]
        needed = keep_P[m] if keep_P is not None else None
        if needed is not None and needed.all():
            needed = None
        chain_ok = prev_R is not None and (prev_N is None or (needed is not None and not (needed & ~prev_N).any()))
        base, idx, sign = choose_base(R, prev_R if chain_ok else None)
        plans.append(MaskPlan(m, base, idx, sign, needed))
        prev_R, prev_N = R, needed
    chains, cur = [], []
    for p in plans:
        if p.base != "prev" and cur:
            chains.append(cur)
            cur = []
        cur.append(p)
    if cur:
        chains.append(cur)
    return chains


def chain_order(chain: list[MaskPlan], n_channels: int) -> np.ndarray:
    """The output channels a chain computes (those its first mask needs), ordered by the
    last position in the chain where each is needed: each mask's needed channels are
    then a suffix."""
    start_ids = np.arange(n_channels) if chain[0].needed is None else np.flatnonzero(chain[0].needed)
    last = np.full(n_channels, len(chain))  # last chain position where each channel is needed
    for i, p in enumerate(chain):
        if p.needed is not None:
            gone = ~p.needed & (last == len(chain))
            last[gone] = i - 1
    return start_ids[np.argsort(last[start_ids], kind="stable")]


def per_mask(plan, masks: MaskSet, first: FirstMix, group: np.ndarray) -> float:
    """Masks ``group`` starting at stage ``first.s``: incremental first mixing stage
    ``first.j``, then channel-sparse evaluation of the remaining stages (``plan``, a
    :class:`~singledir.engine.clamp_plan.ClampPlan`), one mask at a time; returns the FLOPs.

    A Linear stage's chain is unit-major, a (units, B) buffer seen as its (B, units)
    transpose: gathering the chain's units from the base, taking a mask's needed units
    (a suffix of the rows) and the running-sum update then all work on contiguous rows,
    and the next Linear reads it as one row-major product (see ``ClampPlan.sparse_mix``). In
    the example-major layout the chain's column gather alone took 17 ms per chain against
    2 ms (5,000 x 2,048 floats, 2-core Xeon).
    """
    d, ws = first.d, masks.workspace
    device = d.device
    P = plan.clamp_at[first.j]
    st_j = plan.stages[first.j]
    C_out = st_j.out_shape[0]
    B = d.shape[0]
    chains = plan_chains(masks.keep_np[plan.stages[first.s].name], masks.keep_np[P] if P is not None else None,
                         group)
    linear_j = st_j.kind == "linear"
    d_units = transpose_into(d, ws.get("d_units", (d.shape[1], B))) if linear_j else None  # (units, B)
    pre_full_t = None  # the full pre-activation unit-major, once per group (Linear chains from 'full')
    flops = 0.0
    for chain in chains:
        order = chain_order(chain, C_out)
        order_t = torch.as_tensor(order, device=device)
        # A convolution's weights in buffer order, once per chain; a Linear's masks each
        # gather their few rows of the transposed weight (_update_chain), which measured
        # cheaper than a chain-wide (in, n0) gather (0.07 s against 0.12 s over the benchmark's MLP).
        w_chain = None if linear_j else st_j.module.weight.index_select(0, order_t)  # (n0, in, kh, kw)
        if linear_j and chain[0].base == "full" and pre_full_t is None:
            pre_full_t = transpose_into(first.pre_full, ws.get("pre_full_t", (C_out, B)))
        buf = _start_chain(first, chain[0].base, order, order_t, C_out, pre_full_t, ws, linear_j)
        n0 = len(order)
        for step in chain:
            off = 0 if step.needed is None else n0 - int(step.needed.sum())
            view, rows = buf[:, off:], order_t[off:]
            if len(step.idx) and n0 - off:
                flops += _update_chain(plan, masks, first, step, view, rows, w_chain[off:] if w_chain is not None
                                       else None, d_units)
            flops += _finish_mask(plan, masks, first, step.mask, view, rows)
    return flops


def _start_chain(first: FirstMix, base: str, order: np.ndarray, order_t: torch.Tensor, C_out: int,
                 pre_full_t: torch.Tensor | None, ws: Workspace, linear_j: bool) -> torch.Tensor:
    """The chain's buffer holding its base pre-activation ('full' or 'empty') on the
    channels ``order``: (B, n0), unit-major for a Linear stage; (B, n0, H, W) else."""
    B = first.d.shape[0]
    n0 = len(order)
    identity = n0 == C_out and np.array_equal(order, np.arange(C_out))
    if linear_j:
        buf_t = ws.get("chain", (n0, B))
        if base == "full":
            if identity:
                buf_t.copy_(pre_full_t)
            else:
                torch.index_select(pre_full_t, 0, order_t, out=buf_t)
        else:
            buf_t.copy_(first.pre_empty[0].index_select(0, order_t).unsqueeze(1).expand(n0, B))
        return buf_t.t()  # (B, n0), unit-major
    buf = ws.get("chain", (B, n0, *first.pre_full.shape[2:]))
    base_t = first.pre_full if base == "full" else first.pre_empty
    if identity:
        buf.copy_(base_t.expand_as(buf))
    elif base_t.shape[0] == B:
        select_channels(base_t, order_t, out=buf)
    else:
        buf.copy_(base_t.index_select(1, order_t).expand_as(buf))
    return buf


def _update_chain(plan, masks: MaskSet, first: FirstMix, step: MaskPlan, view: torch.Tensor, rows: torch.Tensor,
                  w_rows: torch.Tensor | None, d_units: torch.Tensor | None) -> float:
    """``view`` (the mask's needed channels ``rows`` of the chain's buffer) -= the first
    mixing stage applied to ``d`` on the mask's units ``step.idx`` times ``step.sign``,
    in place; returns the FLOPs. ``w_rows``: a convolution's weights of ``rows``;
    ``d_units``: ``d`` unit-major (a Linear stage)."""
    j, d, cdtype = first.j, first.d, masks.cdtype
    st_j = plan.stages[j]
    device = d.device
    B = d.shape[0]
    idx_t = torch.as_tensor(step.idx, device=device)
    sign = step.sign
    # base - A(d * sign): with one sign throughout it goes into alpha
    alpha = -1.0 if (sign > 0).all() else (1.0 if (sign < 0).all() else None)
    sign_t = None if alpha is not None else torch.as_tensor(sign, device=device)
    if st_j.kind == "linear":
        # the mask's units' rows of the transposed weight (contiguous), then
        # its needed outputs: a gather of |idx| x n_out, not of in x n0 per chain
        w = plan.weight_t(j).index_select(0, idx_t).index_select(1, rows)  # (|idx|, n_out)
        if sign_t is not None:
            w = w * sign_t.view(-1, 1)
        dsub = d_units.index_select(0, idx_t)  # (|idx|, B)
        view_t = view.t()  # (n_out, B): contiguous rows of the chain
        if cdtype is None:
            view_t.addmm_(w.t(), dsub, alpha=-1.0 if alpha is None else alpha)
        else:
            inc = (w.t().to(cdtype) @ dsub.to(cdtype)).float()
            view_t.add_(inc, alpha=-1.0 if alpha is None else alpha)
        return mix_flops(st_j, B, len(step.idx), len(rows))
    w = w_rows.index_select(1, idx_t)
    if sign_t is not None:
        w = w * sign_t.view((1, -1, *([1] * (st_j.module.weight.dim() - 2))))
    dsub = d.index_select(1, idx_t).contiguous(memory_format=torch.channels_last)
    inc, f = plan.mix(j, dsub, w, cdtype, masks.workspace)
    view.add_(inc, alpha=-1.0 if alpha is None else alpha)
    return f


def _finish_mask(plan, masks: MaskSet, first: FirstMix, m: int, view: torch.Tensor, rows: torch.Tensor) -> float:
    """Mask m from its first pre-activation (``view`` on channels ``rows``) through the
    remaining stages, channel-sparse: the live channels are computed, the ablated ones
    are constants (one example); scores the logits, returns the FLOPs."""
    j, ws = first.j, masks.workspace
    st_j = plan.stages[j]
    device = view.device
    B = view.shape[0]
    flops = 0.0
    live, S, const = view, rows, first.pre_empty
    P = plan.clamp_at[j]
    if P == st_j.name:
        live, S, const = plan.clamp(P, m, live, S, const, masks)
    fused = 0  # channel-wise stages a mixing stage already applied to live
    pending: list[int] = []  # channel-wise stages not yet applied to live (see ClampPlan.deferrable)
    for k in range(j + 1, len(plan.stages)):
        st = plan.stages[k]
        if fused:
            _, const = plan.channelwise(k, const, None, const)
            fused -= 1
        elif st.kind in ("linear", "conv"):
            live, S, const, f, fused = plan.sparse_mix(k, live, S, const, m, masks, pending)
            pending = []
            flops += f
        elif plan.deferrable[k]:
            _, const = plan.channelwise(k, const, None, const)
            pending.append(k)
        else:
            live, pending = plan.apply_pending(live, S, pending, ws), []
            live, const = plan.channelwise(k, live, S, const, ws)
        if st.name in masks.keep_t:  # selecting channels commutes with pending channel-wise stages
            live, S, const = plan.clamp(st.name, m, live, S, const, masks)
    live = plan.apply_pending(live, S, pending, ws)
    C = const.shape[1]
    if len(S) == C and bool((S == torch.arange(C, device=device)).all()):
        logits = live
    else:
        logits = const.expand(B, *const.shape[1:]).clone()
        logits[:, S] = live
    masks.score(logits.unsqueeze(0), first.yb, [m])
    return flops
