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
  output depends on channel c of the input alone.

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
gathers its input, :meth:`ClampPlan._deferrable`; those after it, :meth:`ClampPlan._epilogue`,
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
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from singledir.engine.batch import class_major_scores
from singledir.engine.linear import linear
from singledir.engine.options import EngineOptions
from singledir.engine import winograd

# Modules that act on each channel separately and are deterministic in eval mode.
_POINTWISE = (nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Hardtanh,
              nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout,
              nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
              nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
# Relative cost of copying one (B, n) activation compared with one unit of a
# (B, |units|, n) matrix product, for choosing how to reach a mask's pre-activation.
_GATHER_COST = 8
# Largest activation (bytes) of one block of examples in the unperturbed pass. Measured on the ConvNet (width 0.5, 2,000 images, load ~1.5): blocks
# of 64 images (8 MiB of conv1 output) ran the pass in 1.05 s, 256 in 1.29 s and the
# whole chunk in 1.73 s.
_BASE_BLOCK_BYTES = 8 << 20


def _stage_kind(mod: nn.Module) -> str | None:
    t = type(mod)
    if t is nn.Linear:
        return "linear"
    if t is nn.Conv2d and mod.groups == 1 and mod.padding_mode == "zeros":
        return "conv"
    if t in (nn.BatchNorm1d, nn.BatchNorm2d) and mod.running_mean is not None:
        return "bn"
    if t is nn.ReLU:
        return "relu"
    if t in _POINTWISE and not getattr(mod, "return_indices", False):
        return "pointwise"
    if t is nn.Flatten and mod.start_dim == 1 and mod.end_dim == -1:
        return "flatten"
    return None


@dataclass
class _Stage:
    name: str
    module: nn.Module
    kind: str
    out_shape: tuple  # of one example


def _mix_flops(stage: _Stage, rows: int, n_in: int, n_out: int) -> float:
    """Multiply-add FLOPs (2 per MAC) of a mixing stage restricted to n_in -> n_out channels."""
    if stage.kind == "linear":
        return 2.0 * rows * n_in * n_out
    kh, kw = stage.module.kernel_size
    spatial = int(np.prod(stage.out_shape[1:]))
    return 2.0 * rows * n_in * n_out * kh * kw * spatial


def _transpose_into(x: torch.Tensor, out: torch.Tensor, rows: int = 64) -> torch.Tensor:
    """x.t() written into the contiguous ``out``, in blocks of ``rows`` rows of x.

    Why blocks: a whole-tensor transposing copy runs at ~2.5 GB/s on a 2-core Xeon
    (32 ms for 5,000 x 2,048 floats); blocks of 64 rows, whose source and destination
    stay in cache, take 11 ms (measured)."""
    for r in range(0, x.shape[0], rows):
        out[:, r:r + rows].copy_(x[r:r + rows].t())
    return out


def _unit_major(t: torch.Tensor) -> bool:
    """Whether a (B, C) tensor is the transpose of a contiguous (C, B) one."""
    return t.dim() == 2 and t.shape[0] > 1 and t.stride(0) == 1 and t.stride(1) == t.shape[0]


def _select_channels(x: torch.Tensor, idx: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``x.index_select(1, idx)`` (into ``out`` if given).

    A channels-last (B, C, H, W) map is gathered as the columns of its (B*H*W, C) rows:
    ``index_select`` on the 4-d tensor walks it channel by channel and ran at ~1 GB/s
    (24 ms for 245 of 256 channels of 2,000 4x4 maps on a 2-core Xeon), the 2-d form
    takes 6 ms (measured). Same values either way (a gather copies)."""
    if (x.dim() == 4 and x.shape[2] * x.shape[3] > 1 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)):
        b, c, h, w = x.shape
        if out is None:
            out = torch.empty((b, len(idx), h, w), device=x.device, dtype=x.dtype, memory_format=torch.channels_last)
        if out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous():
            torch.index_select(x.permute(0, 2, 3, 1).reshape(-1, c), 1, idx,
                               out=out.permute(0, 2, 3, 1).view(-1, len(idx)))
            return out
    return torch.index_select(x, 1, idx, out=out) if out is not None else x.index_select(1, idx)


class ClampPlan:
    """A Sequential model compiled for exact channel-sparse evaluation of masks.

    Build with :meth:`build`, which returns a reason string instead when the model or
    the layers are outside what the plan handles.
    """

    def __init__(self, stages: list[_Stage], layers: list[str], first: int):
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
                kind = _stage_kind(mod)
                if i > first:
                    if kind is None:
                        return f"stage {name!r} ({type(mod).__name__}) is not understood by the channel plan"
                    if kind == "flatten" and (h_in.dim() < 2 or int(np.prod(h_in.shape[2:])) != 1):
                        return f"stage {name!r} flattens a spatial map"
                    if kind == "linear" and h_in.dim() != 2:
                        return f"stage {name!r} is a Linear on a {h_in.dim()}-d input"
                stages.append(_Stage(name, mod, kind or "other", tuple(h.shape[1:])))
        plan = cls(stages, order, first)
        idx = [names.index(n) for n in order]
        for a, b in zip(idx, idx[1:] + [None]):
            j = plan.next_mix[a]
            if j is None:
                return f"no Linear/Conv2d stage follows perturbed layer {names[a]!r}"
            if b is not None and b < j:
                return f"perturbed layers {names[a]!r} and {names[b]!r} have no mixing stage between them"
        return plan

    # ------------------------------------------------------------------ helpers

    def _mix(self, j: int, x: torch.Tensor, w: torch.Tensor, cdtype, ws: "_Workspace") -> tuple[torch.Tensor, float]:
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
        return (out.float() if cdtype is not None else out), _mix_flops(st, x.shape[0], n_in, n_out)

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

    def _weight_t(self, j: int) -> torch.Tensor:
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

    def _channelwise(self, k: int, live: torch.Tensor, S: torch.Tensor | None, const: torch.Tensor,
                     ws: "_Workspace | None" = None):
        """Channel-wise stage k on the live channels ``S`` (None: all) and on the constants.

        With a workspace, ReLU and batch norm write into stage k's buffer (the hot loop
        then allocates nothing)."""
        if live.shape[1] == 0:  # every channel is a constant
            _, const = self._channelwise(k, const, None, const)
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
                          ws: "_Workspace | None") -> torch.Tensor:
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
        its input per block (:meth:`_sparse_mix`, Winograd form): a ReLU or an eval-mode
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
        cdtype = torch.bfloat16 if bf16 else None
        autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else None
        U = next(iter(keep.values())).shape[0]
        keep_np = {n: keep[n].cpu().numpy() for n in self.layers}
        keep_t = keep
        fillc = {}
        for n in self.layers:
            shape = self.stages[self.index[n]].out_shape
            f = fill.get(n)
            if f is not None and tuple(f.shape) != shape:
                raise ValueError(f"ablation fill for {n!r} has shape {tuple(f.shape)}; the layer's activation "
                                 f"of one example has shape {shape}")
            fillc[n] = (torch.zeros((1, *shape), device=device) if f is None
                        else f.to(device=device, dtype=torch.float32).unsqueeze(0))
        # Each mask starts at the first layer it perturbs.
        start = np.full(U, -1)
        for n in reversed(self.layers):
            start[~keep_np[n].all(1)] = self.index[n]
        groups = {s: np.flatnonzero(start == s) for s in sorted(set(start.tolist())) if s >= 0}
        # Constants per start layer: T(fill) at the first mixing stage's input, and that
        # stage applied to it (the pre-activation with every unit of the layer ablated).
        consts = {}
        for s in groups:
            j = self.next_mix[s]
            t = fillc[self.stages[s].name]
            for k in range(s + 1, j):
                t, _ = self._channelwise(k, t, torch.arange(t.shape[1], device=device), t)
            consts[s] = (t, bool((t == 0).all()), self._mix_full(j, t))
        cache_at = set()
        for s in groups:
            cache_at |= {self.next_mix[s] - 1, self.next_mix[s]}
        loss_sum = torch.zeros(U, dtype=torch.float64, device=device)
        correct = torch.zeros(U, dtype=torch.float64, device=device)
        flops = {"base": 0.0, "suffix": 0.0}
        timing = {"base": 0.0, "suffix": 0.0}
        sync = (lambda: torch.cuda.synchronize(device)) if (device.type == "cuda" and stats is not None) else (lambda: None)
        none = np.flatnonzero(start == -1)
        ws = _Workspace(device)

        def score(logits, yb, idx):
            # logits (G, B, K) for the masks idx: cross-entropy and top-k hits per mask
            loss, hit = class_major_scores(logits, yb, topk)
            idx_t = torch.as_tensor(idx, device=device)
            loss_sum.index_add_(0, idx_t, loss.sum(1, dtype=torch.float64))
            correct.index_add_(0, idx_t, hit.sum(1, dtype=torch.float64))

        for i0 in range(0, len(x), chunk_size):
            xb, yb = x[i0:i0 + chunk_size], y[i0:i0 + chunk_size]
            B = len(xb)
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
            for s, masks in groups.items():
                j = self.next_mix[s]
                t_fill, fill_is_zero, pre_empty = consts[s]
                x_full = cache[j - 1]
                d = x_full if fill_is_zero else x_full - t_fill
                if d.dim() == 4:
                    d = d.contiguous()  # channels gather as contiguous (H, W) blocks
                if j == len(self.stages) - 1 and self.stages[j].kind == "linear" and self.clamp_at[j] is None:
                    flops["suffix"] += self._readout(j, d, cache[j], pre_empty, keep_np[self.stages[s].name], masks,
                                                     yb, score, max_rows, cdtype)
                else:
                    flops["suffix"] += self._per_mask(s, j, d, cache[j], pre_empty, keep_np, keep_t, fillc,
                                                      masks, yb, score, cdtype, ws)
            sync()
            timing["suffix"] += time.perf_counter() - t1
        if stats is not None:
            stats["flops_base"] = stats.get("flops_base", 0.0) + flops["base"]
            stats["flops_suffix"] = stats.get("flops_suffix", 0.0) + flops["suffix"]
            stats["time_base"] = stats.get("time_base", 0.0) + timing["base"]
            stats["time_suffix"] = stats.get("time_suffix", 0.0) + timing["suffix"]
        return loss_sum, correct

    def _base_rows(self) -> int:
        """Examples per block of the unperturbed pass: blocks whose largest activation
        fits in _BASE_BLOCK_BYTES run faster than one whole chunk (which spills every
        layer's output to main memory, and pays page faults for fresh tensors of
        hundreds of megabytes)."""
        largest = max(int(np.prod(st.out_shape)) for st in self.stages) * 4
        return max(1, _BASE_BLOCK_BYTES // largest)

    def _base_pass(self, xb: torch.Tensor, cache_at: set, ws: "_Workspace") -> tuple[dict, torch.Tensor, float]:
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
                    flops += _mix_flops(st, len(h), h_in.shape[1], h.shape[1])
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

    def _choose(self, R: np.ndarray, prev_R: np.ndarray | None) -> tuple[str, np.ndarray, np.ndarray]:
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

    def _readout(self, j, d, logits_full, logits_empty, keep_L, masks, yb, score, max_rows, cdtype) -> float:
        """Masks that touch only the last perturbed layer, which feeds the final Linear:
        all their logits from one batched matrix product over masks."""
        W = self.stages[j].module.weight  # (K, C)
        device = d.device
        B, K = logits_full.shape
        plans, prev = [], None
        for m in masks:
            R = ~keep_L[m]
            base, idx, sign = self._choose(R, prev)
            plans.append((base, idx, sign))
            prev = R
        flops = 0.0
        budget = max(1, max_rows * 64)  # elements of the gathered (G, B, r) block
        g0, last = 0, None
        while g0 < len(masks):
            r = max(1, len(plans[g0][1]))
            g1 = g0 + 1
            while g1 < len(masks) and (g1 - g0 + 1) * B * max(r, len(plans[g1][1]), 1) <= budget:
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
            if cdtype is not None:
                inc = torch.bmm(D.to(cdtype), Wg.to(cdtype)).float()
            else:
                inc = torch.bmm(D, Wg)
            flops += 2.0 * B * K * sum(len(plans[g0 + g][1]) for g in range(G))
            out = torch.empty(G, B, K, device=device)
            for g in range(G):
                base = plans[g0 + g][0]
                ref = logits_full if base == "full" else (logits_empty if base == "empty" else last)
                out[g] = ref - inc[g]
                last = out[g]
            score(out, yb, masks[g0:g1])
            last = out[G - 1].clone()
            g0 = g1
        return flops

    def _per_mask(self, s, j, d, pre_full, pre_empty, keep_np, keep_t, fillc, masks, yb, score, cdtype,
                  ws: "_Workspace") -> float:
        """Masks starting at stage s: incremental first mixing stage j, then channel-sparse
        evaluation of the remaining stages, one mask at a time.

        Consecutive masks whose pre-activations follow from each other (a cumulative
        curve) form a *chain* that lives in one buffer, updated in place. Its output
        channels are ordered by when they stop being needed (the next perturbed layer
        ablates them), so each mask's needed channels are a suffix of the buffer: a view.
        """
        device = d.device
        L = self.stages[s].name
        P = self.clamp_at[j]
        st_j = self.stages[j]
        mod_j = st_j.module
        C_out = st_j.out_shape[0]
        B = d.shape[0]
        wdim = (1, -1, *([1] * (mod_j.weight.dim() - 2)))
        # Plan every mask first (cheap, on the host): its base and its chain.
        plans, prev_R, prev_N = [], None, None
        for m in masks:
            R = ~keep_np[L][m]
            needed = keep_np[P][m] if P is not None else None
            if needed is not None and needed.all():
                needed = None
            chain_ok = prev_R is not None and (prev_N is None or (needed is not None and not (needed & ~prev_N).any()))
            base, idx, sign = self._choose(R, prev_R if chain_ok else None)
            plans.append((m, base, idx, sign, needed))
            prev_R, prev_N = R, needed
        chains, cur = [], []
        for p in plans:
            if p[1] != "prev" and cur:
                chains.append(cur)
                cur = []
            cur.append(p)
        if cur:
            chains.append(cur)
        # A Linear stage's chain is unit-major, a (units, B) buffer seen as its (B, units)
        # transpose: gathering the chain's units from the base, taking a mask's needed units
        # (a suffix of the rows) and the running-sum update then all work on contiguous rows,
        # and the next Linear reads it as one row-major product (see _sparse_mix). In the
        # example-major layout the chain's column gather alone took 17 ms per chain against
        # 2 ms (5,000 x 2,048 floats, 2-core Xeon).
        linear_j = st_j.kind == "linear"
        d_units = _transpose_into(d, ws.get("d_units", (d.shape[1], B))) if linear_j else None  # (units, B)
        pre_full_t = None
        flops = 0.0
        for chain in chains:
            start_ids = np.arange(C_out) if chain[0][4] is None else np.flatnonzero(chain[0][4])
            last = np.full(C_out, len(chain))  # last chain position where each channel is needed
            for i, p in enumerate(chain):
                if p[4] is not None:
                    gone = ~p[4] & (last == len(chain))
                    last[gone] = i - 1
            order = start_ids[np.argsort(last[start_ids], kind="stable")]
            order_t = torch.as_tensor(order, device=device)
            n0 = len(order)
            # A convolution's weights in buffer order, once per chain; a Linear's masks each
            # gather their few rows of the transposed weight (below), which measured cheaper
            # than a chain-wide (in, n0) gather (0.07 s against 0.12 s over the benchmark's MLP).
            w_chain = None if linear_j else mod_j.weight.index_select(0, order_t)  # (n0, in, kh, kw)
            identity = n0 == C_out and np.array_equal(order, np.arange(C_out))
            if linear_j:
                buf_t = ws.get("chain", (n0, B))
                if chain[0][1] == "full":
                    if pre_full_t is None:
                        pre_full_t = _transpose_into(pre_full, ws.get("pre_full_t", (C_out, B)))
                    if identity:
                        buf_t.copy_(pre_full_t)
                    else:
                        torch.index_select(pre_full_t, 0, order_t, out=buf_t)
                else:
                    buf_t.copy_(pre_empty[0].index_select(0, order_t).unsqueeze(1).expand(n0, B))
                buf = buf_t.t()  # (B, n0), unit-major
            else:
                buf = ws.get("chain", (B, n0, *pre_full.shape[2:]))
                base_t = pre_full if chain[0][1] == "full" else pre_empty
                if identity:
                    buf.copy_(base_t.expand_as(buf))
                elif base_t.shape[0] == B:
                    _select_channels(base_t, order_t, out=buf)
                else:
                    buf.copy_(base_t.index_select(1, order_t).expand_as(buf))
            for m, _, idx, sign, needed in chain:
                off = 0 if needed is None else n0 - int(needed.sum())
                view, rows = buf[:, off:], order_t[off:]
                n_out = n0 - off
                if len(idx) and n_out:
                    idx_t = torch.as_tensor(idx, device=device)
                    # base - A(d * sign): with one sign throughout it goes into alpha
                    alpha = -1.0 if (sign > 0).all() else (1.0 if (sign < 0).all() else None)
                    sign_t = None if alpha is not None else torch.as_tensor(sign, device=device)
                    if st_j.kind == "linear":
                        # the mask's units' rows of the transposed weight (contiguous), then
                        # its needed outputs: a gather of |idx| x n_out, not of in x n0 per chain
                        w = self._weight_t(j).index_select(0, idx_t).index_select(1, rows)  # (|idx|, n_out)
                        if sign_t is not None:
                            w = w * sign_t.view(-1, 1)
                        dsub = d_units.index_select(0, idx_t)  # (|idx|, B)
                        view_t = view.t()  # (n_out, B): contiguous rows of the chain
                        if cdtype is None:
                            view_t.addmm_(w.t(), dsub, alpha=-1.0 if alpha is None else alpha)
                        else:
                            inc = (w.t().to(cdtype) @ dsub.to(cdtype)).float()
                            view_t.add_(inc, alpha=-1.0 if alpha is None else alpha)
                    else:
                        w = w_chain[off:].index_select(1, idx_t)
                        if sign_t is not None:
                            w = w * sign_t.view(wdim)
                        dsub = d.index_select(1, idx_t).contiguous(memory_format=torch.channels_last)
                        inc, f = self._mix(j, dsub, w, cdtype, ws)
                        view.add_(inc, alpha=-1.0 if alpha is None else alpha)
                        flops += f
                    if st_j.kind == "linear":
                        flops += _mix_flops(st_j, B, len(idx), n_out)
                live, S, const = view, rows, pre_empty
                if P == st_j.name:
                    live, S, const = self._clamp(P, m, live, S, const, keep_t, fillc)
                fused = 0  # channel-wise stages a mixing stage already applied to live
                pending: list[int] = []  # channel-wise stages not yet applied to live (see _deferrable)
                for k in range(j + 1, len(self.stages)):
                    st = self.stages[k]
                    if fused:
                        _, const = self._channelwise(k, const, None, const)
                        fused -= 1
                    elif st.kind in ("linear", "conv"):
                        live, S, const, f, fused = self._sparse_mix(k, live, S, const, keep_np, m, cdtype, ws,
                                                                    pending)
                        pending = []
                        flops += f
                    elif self.deferrable[k]:
                        _, const = self._channelwise(k, const, None, const)
                        pending.append(k)
                    else:
                        live, pending = self._apply_pending(live, S, pending, ws), []
                        live, const = self._channelwise(k, live, S, const, ws)
                    if st.name in keep_t:  # selecting channels commutes with pending channel-wise stages
                        live, S, const = self._clamp(st.name, m, live, S, const, keep_t, fillc)
                live = self._apply_pending(live, S, pending, ws)
                C = const.shape[1]
                if len(S) == C and bool((S == torch.arange(C, device=device)).all()):
                    logits = live
                else:
                    logits = const.expand(B, *const.shape[1:]).clone()
                    logits[:, S] = live
                score(logits.unsqueeze(0), yb, [m])
        return flops

    def _clamp(self, name, m, live, S, const, keep_t, fillc):
        kept = keep_t[name][m]
        pos = kept.index_select(0, S)
        if not bool(pos.all()):
            keep_idx = pos.nonzero().squeeze(1)
            live, S = _select_channels(live, keep_idx), S.index_select(0, keep_idx)
        view = kept.view(1, -1, *([1] * (const.dim() - 2)))
        const = torch.where(view, const, fillc[name])
        return live, S, const

    def _epilogue(self, k: int) -> list[int]:
        """The channel-wise stages after mixing stage k that its Winograd form applies to
        each block of its output (see :meth:`_sparse_mix`): an eval-mode batch norm, a
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

    def _apply_pending(self, live, S, pending: list[int], ws) -> torch.Tensor:
        for i in pending:
            live = self._live_channelwise(i, live, S, ws)
        return live

    def _sparse_mix(self, k, live, S, const, keep_np, m, cdtype, ws, pending: list[int] = ()):
        """Mixing stage k on the live channels ``S`` (the constants enter as a bias);
        returns (live, S, const, FLOPs, n) where the Winograd form has also applied the
        next n channel-wise stages (:meth:`_epilogue`) to live; const is stage k's alone.
        ``pending``: channel-wise stages still to apply to ``live`` first (the Winograd
        form applies them to each block of its input)."""
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
                live = self._apply_pending(live, S, pending, ws)
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
            elif st.kind == "linear" and cdtype is None and _unit_major(live):
                # unit-major input (a Linear chain): (n_out, B) = w @ live^T is a row-major
                # product of contiguous operands, and its transpose is unit-major again
                out = torch.addmm(bias.t(), w, live.t()).t()
            elif st.kind == "linear" and cdtype is None:
                out = linear(live, w, bias)  # oneDNN on a CPU (engine.linear: 2-4x MKL on some CPUs)
            else:
                out, f = self._mix(k, live, w, cdtype, ws)
                out = out.add_(bias)
            if st.kind == "linear" and cdtype is None:
                f = _mix_flops(st, B, len(S), n_out)
        else:
            out = bias.expand(B, *bias.shape[1:]).contiguous()
            f = 0.0
        S_out = torch.arange(C_out, device=device) if N_t is None else N_t
        return out, S_out, const_out, f, 0


class _Workspace:
    """Reusable float32 buffers by name, so the per-mask loop does not allocate (fresh
    multi-megabyte tensors cost page faults on every call)."""

    def __init__(self, device):
        self.device = device
        self.buffers: dict[str, torch.Tensor] = {}
        self.winograd: dict[str, torch.Tensor] = {}  # block buffers of winograd_conv3x3

    def like(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """A buffer of t's shape and layout (unit-major 2-d tensors stay unit-major, so an
        elementwise operation into it reads and writes in the same order)."""
        if _unit_major(t):
            return self.get(name, (t.shape[1], t.shape[0])).t()
        return self.get(name, t.shape)

    def get(self, name: str, shape) -> torch.Tensor:
        """A (B, C, ...) buffer; feature maps (B, C, H, W) are channels-last, the layout
        in which oneDNN's convolutions are fastest."""
        n = int(np.prod(shape))
        buf = self.buffers.get(name)
        if buf is None or buf.numel() < n:
            buf = self.buffers[name] = torch.empty(n, device=self.device, dtype=torch.float32)
        if len(shape) == 4:
            b, c, h, w = shape
            return buf[:n].view(b, h, w, c).permute(0, 3, 1, 2)
        return buf[:n].view(tuple(shape))
