"""The engine's exact fast path for clamping masks on Sequential models.

:func:`singledir.engine.perturb.evaluate_perturbations` uses this module whenever a batch
of perturbations holds only ablation masks (no noise) and the model is an
:class:`torch.nn.Sequential` whose stages after the first perturbed layer are all
understood (listed below). Everywhere else the engine falls back to its generic
forward-hook path. The tests compare both paths with the plain definition
(:func:`singledir.engine.reference.reference_ablation_eval`) at every point.

Stages are classified as

- *mixing*: ``nn.Linear`` on (B, C) and ``nn.Conv2d`` (``groups=1``, zero padding):
  the only stages that combine channels;
- *channel-wise*: batch norm in eval mode, elementwise activations, dropout (identity
  in eval mode), pooling, and ``nn.Flatten`` of a (C, 1, 1) map: channel c of the
  output depends on channel c of the input alone

(:func:`singledir.engine.clamp_stages.stage_kind`). This module builds the plan and runs
the unperturbed pass and the stage operations; the per-mask work is
:mod:`singledir.engine.clamp_chains`.

Three exact identities do the work (``keep`` is a mask's 0/1 vector over the units of
layer L, ``h`` its activation and ``f`` the fill value, 0 or the training-set mean):

*Linear read-out / incremental first mixing stage.* Let ``A`` be the first mixing
stage after L and ``T`` the channel-wise stages between them. The input of ``A`` under
the mask differs from the unperturbed input only in the removed channels, so with
``d = T(h) - T(f)``::

    A(masked) = A(unmasked) - A_nobias(d restricted to the removed units)
              = A(T(f)) + A_nobias(d restricted to the kept units)

and between two masks ``A(mask2) = A(mask1) - A_nobias(d on units removed by mask2
only) + A_nobias(d on units restored by mask2)``. The engine takes whichever of the
three is cheapest per mask, so a cumulative curve (nested masks) costs one pass of ``A``
per ordering instead of one per point, and a single-unit ablation is a rank-one update.
When ``A`` is the network's last stage (MLP: last hidden layer -> logits; ConvNet: last
layer -> global average pool -> linear) this is the linear read-out, and all masks
that touch only that layer are evaluated by one batched matrix multiply.

*Channel sparsity.* An ablated channel is a constant (0 or the mean map), identical for
every example. A mixing stage then needs only the kept input channels, and only the
output channels that the next perturbed layer keeps: the constant channels enter as a
per-mask bias computed on one example (``A`` applied to the constant map, so padding is
exact). Work shrinks with the fraction ablated (on average a third of the dense cost
over a cumulative curve).

*Small-map convolutions.* On a CPU in float32, a 3x3 convolution on a map of at most 4x4
(the ConvNet's last layers) with at least 16 channels on both sides runs in Winograd's form
(:mod:`singledir.engine.winograd`; F(4x4, 3x3) on a 4x4 map: 4x fewer multiplications than
the direct convolution, float32 rounding errors about 4x a direct convolution's). The batch norm and ReLU on either side of such a convolution are
applied to each block of examples inside it (the stages before it are deferred until it
gathers its input, ``ClampPlan.deferrable``; those after it, ``ClampPlan.epilogue``,
are folded with its bias into ``relu(conv * scale + shift)``), not as passes over whole maps.

*Prefix caching.* One unperturbed pass per data chunk provides the activations where
each mask's first perturbed layer starts; identical masks are evaluated once (by the
caller). The pass runs in blocks of examples whose activations stay in cache.

Results agree with the plain definition up to float rounding (the sums are the same
numbers added in a different order).
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from singledir.engine.batch import class_major_scores
from singledir.engine.clamp_chains import FirstMix, MaskSet, per_mask, readout
from singledir.engine.clamp_stages import Stage, Workspace, mix_flops, select_channels, stage_kind, unit_major
from singledir.engine.linear import linear
from singledir.engine.options import EngineOptions
from singledir.engine import winograd

# Largest activation (bytes) of one block of examples in the unperturbed pass. Measured on
# the ConvNet (width 0.5, 2,000 images, load ~1.5): blocks of 64 images (8 MiB of conv1
# output) ran the pass in 1.05 s, 256 in 1.29 s and the whole chunk in 1.73 s.
_BASE_BLOCK_BYTES = 8 << 20


class ClampPlan:
    """A Sequential model compiled for exact channel-sparse evaluation of masks.

    Build with :meth:`build`, which returns a reason string instead when the model or
    the layers are outside what the plan handles.
    """

    def __init__(self, stages: list[Stage], layers: list[str], first: int):
        self.stages = stages
        self.layers = layers  # perturbed stage names in network order
        self._u_full: dict[int, torch.Tensor] = {}  # Winograd-transformed filters per conv stage
        self._w_t: dict[int, torch.Tensor] = {}  # transposed (in, out) weights per Linear stage
        self.index = {s.name: i for i, s in enumerate(stages)}
        self.first = first
        n = len(stages)
        self.next_mix = [next((k for k in range(i + 1, n) if stages[k].kind in ("linear", "conv")), None)
                         for i in range(n)]
        perturbed = {self.index[name] for name in layers}
        # For a mixing stage j: the perturbed layer that clamps its output channels before
        # any other mixing stage (those channels need not be computed), or None.
        self.clamp_at: dict[int, str | None] = {}
        for j, s in enumerate(stages):
            if s.kind in ("linear", "conv"):
                stop = self.next_mix[j] if self.next_mix[j] is not None else n
                self.clamp_at[j] = next((stages[k].name for k in range(j, stop) if k in perturbed), None)
        # Per stage, fixed by the plan's structure (looked up in the per-mask loop).
        self.epilogue = [self._epilogue(k) for k in range(n)]
        self.deferrable = [self._deferrable(k) for k in range(n)]

    @classmethod
    def build(cls, model: nn.Module, layers, example: torch.Tensor) -> "ClampPlan | str":
        if not isinstance(model, nn.Sequential):
            return "the model is not an nn.Sequential"
        children = list(model.named_children())
        names = [n for n, _ in children]
        missing = [name for name in layers if name not in names]
        if missing:
            return f"layers {missing} are not top-level stages"
        order = sorted(layers, key=names.index)
        first = names.index(order[0])
        stages, h = [], example[:1]
        with torch.no_grad():
            for i, (name, mod) in enumerate(children):
                h_in = h
                h = mod(h)
                kind = stage_kind(mod)
                if i > first:
                    if kind is None:
                        return f"stage {name!r} ({type(mod).__name__}) is not understood by the channel plan"
                    if kind == "flatten" and (h_in.dim() < 2 or int(np.prod(h_in.shape[2:])) != 1):
                        return f"stage {name!r} flattens a spatial map"
                    if kind == "linear" and h_in.dim() != 2:
                        return f"stage {name!r} is a Linear on a {h_in.dim()}-d input"
                stages.append(Stage(name, mod, kind or "other", tuple(h.shape[1:])))
        plan = cls(stages, order, first)
        idx = [names.index(n) for n in order]
        for a, b in zip(idx, idx[1:] + [None]):
            j = plan.next_mix[a]
            if j is None:
                return f"no Linear/Conv2d stage follows perturbed layer {names[a]!r}"
            if b is not None and b < j:
                return f"perturbed layers {names[a]!r} and {names[b]!r} have no mixing stage between them"
        return plan

    # ------------------------------------------------------------------ stage operations
    # (the public ones are the per-mask steps' interface, singledir.engine.clamp_chains)

    def mix(self, j: int, x: torch.Tensor, w: torch.Tensor, cdtype, ws: Workspace) -> tuple[torch.Tensor, float]:
        """Stage j's mixing (no bias) of ``x`` with the weight slice ``w``, and the FLOPs
        it executed. A convolution where the Winograd form pays (:meth:`_winograd`) is
        computed in that form."""
        st = self.stages[j]
        mod = st.module
        n_out, n_in = w.shape[:2]
        if st.kind == "conv" and cdtype is None and self._winograd(j, x, n_in, n_out):
            return winograd.winograd_conv3x3(x, winograd.winograd_filter(w, tuple(st.out_shape[1:])),
                                             ws.get(f"wino{j}", (x.shape[0], n_out, *st.out_shape[1:])), ws.winograd)
        if cdtype is not None:
            x, w = x.to(cdtype), w.to(cdtype)
        if st.kind == "linear":
            out = x @ w.t()
        else:
            out = F.conv2d(x, w, None, mod.stride, mod.padding, mod.dilation)
        return (out.float() if cdtype is not None else out), mix_flops(st, x.shape[0], n_in, n_out)

    def _mix_full(self, j: int, x: torch.Tensor) -> torch.Tensor:
        """Stage j on all channels, with bias, in float32 (used on one constant example)."""
        mod = self.stages[j].module
        if not bool(x.any()):  # zero-ablated constants: the bias alone (a one-example conv is slow)
            out = x.new_zeros((x.shape[0], *self.stages[j].out_shape))
            return out if mod.bias is None else out + mod.bias.view(1, -1, *([1] * (out.dim() - 2)))
        return mod(x)

    def _winograd(self, j: int, x: torch.Tensor, n_in: int, n_out: int, fused: bool = False) -> bool:
        """Whether stage j's convolution of ``x`` (n_in -> n_out channels) runs in the
        Winograd form (:mod:`singledir.engine.winograd`): float32 on a CPU, a 3x3 stride-1
        convolution on a map of at most 4x4, and channel counts at which it was measured
        faster than a direct convolution. (On CUDA, cuDNN chooses its own algorithms.)"""
        return (x.device.type == "cpu" and x.dtype == torch.float32
                and winograd.winograd_applies(self.stages[j].module, self.stages[j].out_shape[1:])
                and winograd.winograd_pays(n_in, n_out, fused))

    def _winograd_filter(self, k: int, rows: torch.Tensor | None, cols: torch.Tensor | None) -> torch.Tensor:
        """Stage k's transformed filters restricted to output channels ``rows`` and input
        channels ``cols`` (None: all); the whole layer's are transformed once per plan."""
        u = self._u_full.get(k)
        if u is None:
            u = self._u_full[k] = winograd.winograd_filter(self.stages[k].module.weight,
                                                            tuple(self.stages[k].out_shape[1:]))
        if cols is None:
            return u if rows is None else u.index_select(2, rows)
        if rows is None:
            return u.index_select(1, cols)
        # both: one index_select of the (in, out) pairs from each position's flattened
        # (in x out) filters, measured 2.3x (2 threads) to 4x (1 thread) faster than
        # advanced indexing u[:, cols[:, None], rows] and 4x faster than two index_selects
        # (36 x 256 x 256 -> 240 x 245, on the Xeon)
        pairs = (cols.unsqueeze(1) * u.shape[2] + rows).flatten()
        return u.view(u.shape[0], -1).index_select(1, pairs).view(u.shape[0], len(cols), len(rows))

    def weight_t(self, j: int) -> torch.Tensor:
        """Linear stage j's weight transposed, (in, out) contiguous, once per plan."""
        w = self._w_t.get(j)
        if w is None:
            w = self._w_t[j] = self.stages[j].module.weight.t().contiguous()
        return w

    @staticmethod
    def _weight(mod: nn.Module, rows: torch.Tensor | None, cols: torch.Tensor) -> torch.Tensor:
        """weight[rows][:, cols], gathering along the more selective dimension first."""
        w = mod.weight
        if rows is None:
            return w.index_select(1, cols)
        if len(rows) * w.shape[1] <= w.shape[0] * len(cols):
            return w.index_select(0, rows).index_select(1, cols)
        return w.index_select(1, cols).index_select(0, rows)

    def channelwise(self, k: int, live: torch.Tensor, S: torch.Tensor | None, const: torch.Tensor,
                     ws: "Workspace | None" = None):
        """Channel-wise stage k on the live channels ``S`` (None: all) and on the constants.

        With a workspace, ReLU and batch norm write into stage k's buffer (the hot loop
        then allocates nothing)."""
        if live.shape[1] == 0:  # every channel is a constant
            _, const = self.channelwise(k, const, None, const)
            return live.new_empty((live.shape[0], 0, *const.shape[2:])), const
        st = self.stages[k]
        mod = st.module
        if st.kind == "relu":
            return self._live_channelwise(k, live, S, ws), F.relu(const)
        if st.kind == "bn":
            const_out = F.batch_norm(const, mod.running_mean, mod.running_var, mod.weight, mod.bias, False, 0.0,
                                     mod.eps)
            return self._live_channelwise(k, live, S, ws), const_out
        if st.kind == "flatten":
            return live.flatten(1), const.flatten(1)
        if getattr(mod, "inplace", False):
            return mod(live.clone()), mod(const.clone())
        return mod(live), mod(const)

    def _live_channelwise(self, k: int, live: torch.Tensor, S: torch.Tensor | None,
                          ws: "Workspace | None") -> torch.Tensor:
        """ReLU or eval-mode batch norm stage k on the live channels ``S`` (None: all)."""
        st = self.stages[k]
        if live.shape[1] == 0:
            return live
        if st.kind == "relu":
            out = ws.like(f"s{k}", live) if ws is not None else None
            return torch.clamp_min(live, 0, out=out) if out is not None else F.relu(live)
        mod = st.module
        if ws is None or S is None:
            def pick(p):
                return None if p is None else (p if S is None else p.index_select(0, S))
            return F.batch_norm(live, pick(mod.running_mean), pick(mod.running_var), pick(mod.weight),
                                pick(mod.bias), False, 0.0, mod.eps)
        scale, shift = self._bn_affine(k, S)  # eval-mode batch norm is y = x * scale + shift
        view = (1, -1, *([1] * (live.dim() - 2)))
        return torch.addcmul(shift.view(view), live, scale.view(view), out=ws.like(f"s{k}", live))

    def _deferrable(self, k: int) -> bool:
        """Whether channel-wise stage k may wait for the next mixing stage to apply it to
        its input per block (:meth:`sparse_mix`, Winograd form): a ReLU or an eval-mode
        batch norm followed only by such stages up to a convolution the Winograd form
        can compute."""
        j = self.next_mix[k]
        return (j is not None and all(self.stages[i].kind in ("bn", "relu") for i in range(k, j))
                and self.stages[j].kind == "conv"
                and winograd.winograd_applies(self.stages[j].module, self.stages[j].out_shape[1:]))

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, keep: dict[str, torch.Tensor],
                 fill: dict[str, torch.Tensor | None], options: EngineOptions,
                 stats: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss and number correct per mask (float64, on x's device).

        ``keep[layer]``: bool (U, C) on x's device; ``fill[layer]``: None or (C, ...).
        ``options``: chunking, top-k and precision (``bf16``: bfloat16 operands, float32
        accumulation).
        """
        device = x.device
        chunk_size, topk, max_rows = options.chunk_size, options.topk, options.max_rows
        bf16 = options.precision == "bf16"
        autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else None
        U = next(iter(keep.values())).shape[0]
        keep_np = {n: keep[n].cpu().numpy() for n in self.layers}
        fillc = self._fill_values(fill, device)
        start = self._start_stages(keep_np, U)
        groups = {s: np.flatnonzero(start == s) for s in sorted(set(start.tolist())) if s >= 0}
        consts = {s: self._group_constants(s, fillc[self.stages[s].name]) for s in groups}
        cache_at = set()
        for s in groups:
            cache_at |= {self.next_mix[s] - 1, self.next_mix[s]}
        loss_sum = torch.zeros(U, dtype=torch.float64, device=device)
        correct = torch.zeros(U, dtype=torch.float64, device=device)
        flops = {"base": 0.0, "suffix": 0.0}
        timing = {"base": 0.0, "suffix": 0.0}
        sync = (lambda: torch.cuda.synchronize(device)) if (device.type == "cuda" and stats is not None) else (lambda: None)
        none = np.flatnonzero(start == -1)
        ws = Workspace(device)

        def score(logits, yb, idx):
            # logits (G, B, K) for the masks idx: cross-entropy and top-k hits per mask
            loss, hit = class_major_scores(logits, yb, topk)
            idx_t = torch.as_tensor(idx, device=device)
            loss_sum.index_add_(0, idx_t, loss.sum(1, dtype=torch.float64))
            correct.index_add_(0, idx_t, hit.sum(1, dtype=torch.float64))

        masks = MaskSet(keep_np, keep, fillc, score, torch.bfloat16 if bf16 else None, ws)
        for i0 in range(0, len(x), chunk_size):
            xb, yb = x[i0:i0 + chunk_size], y[i0:i0 + chunk_size]
            sync()
            t0 = time.perf_counter()
            with (autocast() if autocast else contextlib.nullcontext()):
                cache, logits0, f = self._base_pass(xb, cache_at, ws)
            flops["base"] += f
            if len(none):
                score(logits0.unsqueeze(0).expand(len(none), *logits0.shape), yb, none)
            sync()
            t1 = time.perf_counter()
            timing["base"] += t1 - t0
            for s, group in groups.items():
                first = self._first_mix(s, cache, consts[s], yb)
                j = first.j
                if j == len(self.stages) - 1 and self.stages[j].kind == "linear" and self.clamp_at[j] is None:
                    flops["suffix"] += readout(self.stages[j].module.weight, first, keep_np[self.stages[s].name],
                                               group, masks, max_rows)
                else:
                    flops["suffix"] += per_mask(self, masks, first, group)
            sync()
            timing["suffix"] += time.perf_counter() - t1
        if stats is not None:
            stats["flops_base"] = stats.get("flops_base", 0.0) + flops["base"]
            stats["flops_suffix"] = stats.get("flops_suffix", 0.0) + flops["suffix"]
            stats["time_base"] = stats.get("time_base", 0.0) + timing["base"]
            stats["time_suffix"] = stats.get("time_suffix", 0.0) + timing["suffix"]
        return loss_sum, correct

    def _fill_values(self, fill: dict[str, torch.Tensor | None], device) -> dict[str, torch.Tensor]:
        """Per perturbed layer, its clamp values as one float32 example (1, *shape): the
        given fill, or zeros; a fill of another shape than the layer's activation is an error."""
        fillc = {}
        for n in self.layers:
            shape = self.stages[self.index[n]].out_shape
            f = fill.get(n)
            if f is not None and tuple(f.shape) != shape:
                raise ValueError(f"ablation fill for {n!r} has shape {tuple(f.shape)}; the layer's activation "
                                 f"of one example has shape {shape}")
            fillc[n] = (torch.zeros((1, *shape), device=device) if f is None
                        else f.to(device=device, dtype=torch.float32).unsqueeze(0))
        return fillc

    def _start_stages(self, keep_np: dict[str, np.ndarray], n_masks: int) -> np.ndarray:
        """Per mask, the stage index of the first layer it perturbs (-1: none): where it starts."""
        start = np.full(n_masks, -1)
        for n in reversed(self.layers):
            start[~keep_np[n].all(1)] = self.index[n]
        return start

    def _group_constants(self, s: int, fill: torch.Tensor) -> tuple[torch.Tensor, bool, torch.Tensor]:
        """Constants of the masks starting at stage s: T(fill) at the first mixing stage's
        input, whether it is zero, and that stage applied to it (the pre-activation with
        every unit of the layer ablated)."""
        j = self.next_mix[s]
        t = fill
        for k in range(s + 1, j):
            t, _ = self.channelwise(k, t, torch.arange(t.shape[1], device=t.device), t)
        return t, bool((t == 0).all()), self._mix_full(j, t)

    def _first_mix(self, s: int, cache: dict, consts: tuple, yb: torch.Tensor) -> FirstMix:
        """The masks starting at stage s, on one chunk: their first mixing stage's inputs."""
        j = self.next_mix[s]
        t_fill, fill_is_zero, pre_empty = consts
        x_full = cache[j - 1]
        d = x_full if fill_is_zero else x_full - t_fill
        if d.dim() == 4:
            d = d.contiguous()  # channels gather as contiguous (H, W) blocks
        return FirstMix(s, j, d, cache[j], pre_empty, yb)

    def _base_rows(self) -> int:
        """Examples per block of the unperturbed pass: blocks whose largest activation
        fits in _BASE_BLOCK_BYTES run faster than one whole chunk (which spills every
        layer's output to main memory, and pays page faults for fresh tensors of
        hundreds of megabytes)."""
        largest = max(int(np.prod(st.out_shape)) for st in self.stages) * 4
        return max(1, _BASE_BLOCK_BYTES // largest)

    def _base_pass(self, xb: torch.Tensor, cache_at: set, ws: Workspace) -> tuple[dict, torch.Tensor, float]:
        """The unperturbed pass over a chunk, in cache-sized blocks of examples: the
        activations of the stages in ``cache_at`` and the logits (float32), and its FLOPs.
        Blocks are gathered into workspace buffers (a fresh chunk-sized tensor per chunk
        would cost page faults)."""
        B = len(xb)
        n_blocks = -(-B // self._base_rows())
        rows = -(-B // n_blocks)  # equal blocks
        cache: dict[int, torch.Tensor] = {}
        logits, flops = None, 0.0
        for b0 in range(0, B, rows):
            h = xb[b0:b0 + rows]
            if h.dim() == 4 and self.stages[0].kind == "conv":
                h = h.contiguous(memory_format=torch.channels_last)  # faster convolutions, same numbers
            for k, st in enumerate(self.stages):
                h_in = h
                if st.kind == "conv" and self._winograd(k, h, h.shape[1], st.out_shape[0]):
                    bias = st.module.bias  # a fresh output: it may be cached
                    h, f = winograd.winograd_conv3x3(
                        h, self._winograd_filter(k, None, None), workspace=ws.winograd,
                        shift=None if bias is None else bias.view(-1, 1, 1).expand(st.out_shape).contiguous())
                    flops += f
                elif st.kind in ("linear", "conv"):
                    h = linear(h, st.module.weight, st.module.bias) if st.kind == "linear" else st.module(h)
                    flops += mix_flops(st, len(h), h_in.shape[1], h.shape[1])
                else:
                    h = st.module(h)
                if k in cache_at:
                    if rows >= B:
                        nxt = self.stages[k + 1].module if k + 1 < len(self.stages) else None
                        # an in-place activation next would overwrite the cached tensor
                        cache[k] = h.float().clone() if getattr(nxt, "inplace", False) else h.float()
                    else:
                        cache.setdefault(k, ws.get(f"base{k}", (B, *h.shape[1:])))[b0:b0 + len(h)].copy_(h)
            if rows >= B:
                logits = h.float()
            else:
                logits = ws.get("base_logits", (B, *h.shape[1:])) if logits is None else logits
                logits[b0:b0 + len(h)].copy_(h)
        return cache, logits, flops

    def clamp(self, name: str, m: int, live, S, const, masks: MaskSet):
        """Mask m's clamp at perturbed layer ``name``: its ablated channels leave the live
        set ``S`` and become constants (the fill)."""
        kept = masks.keep_t[name][m]
        pos = kept.index_select(0, S)
        if not bool(pos.all()):
            keep_idx = pos.nonzero().squeeze(1)
            live, S = select_channels(live, keep_idx), S.index_select(0, keep_idx)
        view = kept.view(1, -1, *([1] * (const.dim() - 2)))
        const = torch.where(view, const, masks.fill[name])
        return live, S, const

    def _epilogue(self, k: int) -> list[int]:
        """The channel-wise stages after mixing stage k that its Winograd form applies to
        each block of its output (see :meth:`sparse_mix`): an eval-mode batch norm, a
        ReLU, or both in that order, up to and including the first perturbed one (whose
        clamp then follows as usual)."""
        out, allowed = [], ["bn", "relu"]
        for i in range(k + 1, len(self.stages)):
            kind = self.stages[i].kind
            if kind not in allowed:
                break
            out.append(i)
            allowed = allowed[allowed.index(kind) + 1:]
            if self.stages[i].name in self.layers:
                break
        return out

    def _bn_affine(self, k: int, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode batch norm stage k as y = x * scale + shift, on channels ``rows`` (None: all)."""
        mod = self.stages[k].module

        def pick(p):
            return None if p is None else (p if rows is None else p.index_select(0, rows))
        scale = (pick(mod.running_var) + mod.eps).rsqrt()
        if mod.weight is not None:
            scale = scale * pick(mod.weight)
        shift = -pick(mod.running_mean) * scale
        if mod.bias is not None:
            shift = shift + pick(mod.bias)
        return scale, shift

    def apply_pending(self, live, S, pending: list[int], ws) -> torch.Tensor:
        for i in pending:
            live = self._live_channelwise(i, live, S, ws)
        return live

    def sparse_mix(self, k: int, live, S, const, m: int, masks: MaskSet, pending: list[int] = ()):
        """Mixing stage k on the live channels ``S`` (the constants enter as a bias);
        returns (live, S, const, FLOPs, n) where the Winograd form has also applied the
        next n channel-wise stages (:meth:`_epilogue`) to live; const is stage k's alone.
        ``pending``: channel-wise stages still to apply to ``live`` first (the Winograd
        form applies them to each block of its input)."""
        keep_np, cdtype, ws = masks.keep_np, masks.cdtype, masks.workspace
        st = self.stages[k]
        mod = st.module
        P = self.clamp_at[k]
        device = live.device
        B = live.shape[0]
        C_out = st.out_shape[0]
        if P is not None and not keep_np[P][m].all():
            N_t = torch.as_tensor(np.flatnonzero(keep_np[P][m]), device=device)
        else:
            N_t = None
        masked = const.index_fill(1, S, 0.0) if len(S) else const
        const_out = self._mix_full(k, masked)  # constant channels' contribution, with the bias
        n_out = C_out if N_t is None else len(N_t)
        bias = const_out if N_t is None else const_out.index_select(1, N_t)
        if len(S) and n_out:
            epi = self.epilogue[k]
            fused = bool(pending or epi)  # batch norm / ReLU around it, per block
            if st.kind == "conv" and cdtype is None and self._winograd(k, live, len(S), n_out, fused):
                w, u = None, self._winograd_filter(k, N_t, S)
            else:
                w, u = self._weight(mod, N_t, S), None
                live = self.apply_pending(live, S, pending, ws)
            if u is not None:
                prologue = [("relu",) if self.stages[i].kind == "relu" else ("affine", *self._bn_affine(i, S))
                            for i in pending]
                # bias, batch norm and ReLU applied per block while it is in cache: folded into
                # relu(conv * scale + (bias * scale + shift)), one pass fewer per stage
                scale, shift = None, bias[0]
                for i in epi:
                    if self.stages[i].kind == "bn":
                        scale, bn_shift = self._bn_affine(i, N_t)
                        shift = torch.addcmul(bn_shift.view(-1, 1, 1), shift, scale.view(-1, 1, 1))
                relu = any(self.stages[i].kind == "relu" for i in epi)
                out, f = winograd.winograd_conv3x3(live, u, ws.get(f"wino{k}", (B, n_out, *st.out_shape[1:])),
                                                   ws.winograd, scale=scale, shift=shift, relu=relu,
                                                   prologue=prologue)
                return out, (torch.arange(C_out, device=device) if N_t is None else N_t), const_out, f, len(epi)
            elif st.kind == "linear" and cdtype is None and unit_major(live):
                # unit-major input (a Linear chain): (n_out, B) = w @ live^T is a row-major
                # product of contiguous operands, and its transpose is unit-major again
                out = torch.addmm(bias.t(), w, live.t()).t()
            elif st.kind == "linear" and cdtype is None:
                out = linear(live, w, bias)  # oneDNN on a CPU (engine.linear: 2-4x MKL on some CPUs)
            else:
                out, f = self.mix(k, live, w, cdtype, ws)
                out = out.add_(bias)
            if st.kind == "linear" and cdtype is None:
                f = mix_flops(st, B, len(S), n_out)
        else:
            out = bias.expand(B, *bias.shape[1:]).contiguous()
            f = 0.0
        S_out = torch.arange(C_out, device=device) if N_t is None else N_t
        return out, S_out, const_out, f, 0

