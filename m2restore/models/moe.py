"""CLIP-guided mixture of experts of M2Restore: the task prompt and the "DDER" routing layer.

M2Restore (Wang et al., IEEE TIP 2025, https://arxiv.org/abs/2506.07814) places one routing layer before each
encoder level. Every pixel is a token; a router reads the pixel's features and a per-image *task prompt*, adds a bias
from the frozen CLIP degradation prior, and sends the token to the top-k of E small MLP experts (Shazeer et al.,
2017, "Outrageously large neural networks").

Module tree (names follow the release ``yz-wang/M2Restore`` ``net/MOE_CLIPbias.py`` so its checkpoints load)::

    TaskPromptGenerator          release: Taskprompt   (CondNet, lastOut, dictionary)
    DDERBlock                    release: MCDB         (fc: prompt -> C, model: the MoE, residual)
      └─ CLIPGuidedMoE           release: model        (w_g, w_n, degra_proj, gate_boost, el.*, mean, std)
           └─ ExpertMLP x E      release: Mlp          (fc1, fc2)

Paper-vs-release choices exposed here (see DESIGN.md §4):

* ``calibration="release"``: logits + gate_boost * Linear(p), p the CLIP class probabilities.
  ``calibration="bayes"`` (ours): the prior is turned into a distribution over experts, pi = p @ softmax(A), and
  added as ``strength * confidence(p) * log pi`` - a product of experts between the router and the prior whose
  weight shrinks to zero when CLIP is uncertain (uniform p); the projected task prompt is also FiLM-modulated by p.
* ``combine="logsumexp"`` (release: log sum_k g_k exp(y_k), computed stably) or ``"linear"`` (sum_k g_k y_k).
* ``load_with_prior``: the release estimates the smooth load from router logits *without* the CLIP bias although
  routing uses them; True uses the logits that actually route.

Routing statistics are returned per call as a small :class:`RoutingStats` (the release appended every routing
tensor to a list in eval mode, which grows without bound); callers add them up with ``+`` if they want totals.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

Combine = Literal["logsumexp", "linear"]
Calibration = Literal["release", "bayes"]


def cv_squared(x: Tensor, eps: float = 1e-10) -> Tensor:
    """Squared coefficient of variation var/mean^2 of a vector (0 for a single entry), as in the release."""
    if x.numel() <= 1:
        return x.new_zeros(())
    x = x.float()
    return x.var() / (x.mean() ** 2 + eps)


# ----------------------------------------------------------------------------------------------------------------
# Task prompt generator
# ----------------------------------------------------------------------------------------------------------------
class TaskPromptGenerator(nn.Module):
    """Per-image task prompt: a convex combination of learned atoms, weighted from a tiny conv net on the input.

    The conv net (two 3x3 stride-3 convs, three 1x1 convs, LeakyReLU) is pooled to a ``cond_channels`` vector,
    ``lastOut`` maps it to atom weights (softmax), and the prompt is GELU(weights @ dictionary).

    Args:
        in_channels: image channels.
        atom_num: number of atoms in the dictionary (32 in the release).
        atom_dim: prompt width (256 in the release).
        hidden: width of the conv net (64 in the release).
        cond_channels: output channels of the conv net (32 in the release).
    """

    min_size = 9  # two valid 3x3 stride-3 convs need at least 9 pixels

    def __init__(
        self, in_channels: int = 3, atom_num: int = 32, atom_dim: int = 256, hidden: int = 64, cond_channels: int = 32
    ) -> None:
        super().__init__()
        act = nn.LeakyReLU(0.1)
        self.CondNet = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, 3), act,
            nn.Conv2d(hidden, hidden, 3, 3), act,
            nn.Conv2d(hidden, hidden, 1), act,
            nn.Conv2d(hidden, hidden, 1), act,
            nn.Conv2d(hidden, cond_channels, 1),
        )
        self.lastOut = nn.Linear(cond_channels, atom_num)
        self.dictionary = nn.Parameter(torch.randn(atom_num, atom_dim))  # the atoms

    def forward(self, x: Tensor) -> Tensor:
        """Return the prompt (B, atom_dim) of images ``x`` (B, 3, H, W)."""
        ph, pw = max(0, self.min_size - x.shape[-2]), max(0, self.min_size - x.shape[-1])
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")  # (B, 3, >=9, >=9)
        feat = self.CondNet(x).mean(dim=(-2, -1))  # (B, cond_channels)
        weights = self.lastOut(feat).softmax(dim=-1)  # (B, atom_num)
        return F.gelu(weights @ self.dictionary)  # (B, atom_dim)


# ----------------------------------------------------------------------------------------------------------------
# Routing statistics
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class RoutingStats:
    """Detached routing counts of one MoE layer for one forward call (add several with ``+``).

    Attributes:
        counts: (E,) number of token-to-expert assignments per expert (each token counts k times).
        gate_mass: (E,) sum of gate values per expert ("importance").
        class_counts: (K, E) assignments split by the image's most probable degradation class, or None without a
            prior.
        class_names: names of the K prior classes.
    """

    counts: Tensor
    gate_mass: Tensor
    class_counts: Tensor | None = None
    class_names: tuple[str, ...] = field(default_factory=tuple)

    def load(self) -> Tensor:
        """(E,) fraction of assignments per expert."""
        return self.counts / self.counts.sum().clamp_min(1)

    def class_usage(self) -> Tensor | None:
        """(K, E) per-class fraction of assignments per expert (rows of unseen classes are 0)."""
        if self.class_counts is None:
            return None
        return self.class_counts / self.class_counts.sum(dim=1, keepdim=True).clamp_min(1)

    def __add__(self, other: RoutingStats) -> RoutingStats:
        cc = None
        if self.class_counts is not None and other.class_counts is not None:
            cc = self.class_counts + other.class_counts
        return RoutingStats(self.counts + other.counts, self.gate_mass + other.gate_mass, cc, self.class_names)


@dataclass
class Routing:
    """Result of :meth:`CLIPGuidedMoE.route` for N tokens."""

    indices: Tensor  # (N, k) chosen experts, best first
    gates: Tensor  # (N, k) their softmax weights
    importance: Tensor  # (E,) sum of gates per expert (differentiable)
    load: Tensor  # (E,) smooth (training with noise) or counted load per expert


# ----------------------------------------------------------------------------------------------------------------
# Experts and the CLIP-guided MoE layer
# ----------------------------------------------------------------------------------------------------------------
class ExpertMLP(nn.Module):
    """One expert: Linear(C -> hidden) - GELU - Linear(hidden -> C) on a token's features (release: Mlp)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # (n, C)


class CLIPGuidedMoE(nn.Module):
    """Noisy top-k mixture of pixel-wise experts whose router is biased by a degradation prior.

    Router logits per token: ``[x, prompt] @ w_g`` plus the calibrated prior bias; in training with
    ``noisy_gating``, Gaussian noise of std softplus(``[x, prompt] @ w_n``) + 0.01 is added before the top-k.

    Args:
        dim: token width C.
        prompt_dim: width of the (already projected) prompt concatenated to each token; 0 without a task prompt.
        num_experts: E.
        top_k: experts per token k.
        mlp_ratio: expert hidden width = int(C * mlp_ratio).
        num_classes: K, classes of the prior; 0 without a prior.
        calibration: how the prior enters the router ("release" or "bayes", see the module docstring).
        combine: "logsumexp" (release) or "linear".
        noisy_gating: add learned noise to the logits in training.
        load_with_prior: smooth load from the biased logits (True) or from the unbiased ones (release).
        router_init: "randn" (release: N(0, 1) entries) or "scaled" (N(0, 1/fan_in), calmer first steps).
    """

    def __init__(
        self, dim: int, prompt_dim: int, num_experts: int = 6, top_k: int = 2, mlp_ratio: float = 2.66,
        num_classes: int = 6, calibration: Calibration = "release", combine: Combine = "logsumexp",
        noisy_gating: bool = True, load_with_prior: bool = False, router_init: Literal["randn", "scaled"] = "randn",
    ) -> None:
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"moe.py: top_k={top_k} must be in [1, num_experts={num_experts}]")
        self.dim, self.num_experts, self.k = dim, num_experts, top_k
        self.num_classes, self.calibration, self.combine = num_classes, calibration, combine
        self.noisy_gating, self.load_with_prior = noisy_gating, load_with_prior
        router_in = dim + prompt_dim
        scale = 1.0 if router_init == "randn" else router_in ** -0.5
        self.w_g = nn.Parameter(torch.randn(router_in, num_experts) * scale)  # W_g, Shazeer's gating weights
        self.w_n = nn.Parameter(torch.zeros(router_in, num_experts))  # W_noise
        if num_classes and calibration == "release":
            self.degra_proj = nn.Linear(num_classes, num_experts)
            self.gate_boost = nn.Parameter(torch.tensor(0.5))
        elif num_classes and calibration == "bayes":
            self.prior_assign = nn.Parameter(torch.zeros(num_classes, num_experts))  # A: class -> expert affinity
            self.prior_strength = nn.Parameter(torch.tensor(math.log(math.e - 1)))  # softplus(.) = 1 at init
            self.prompt_film = nn.Linear(num_classes, 2 * prompt_dim) if prompt_dim else None
            if self.prompt_film is not None:
                nn.init.zeros_(self.prompt_film.weight)
                nn.init.zeros_(self.prompt_film.bias)
        elif num_classes:
            raise ValueError(f"moe.py: unknown calibration {calibration!r}; use 'release' or 'bayes'")
        self.el = nn.ModuleList([ExpertMLP(dim, int(dim * mlp_ratio)) for _ in range(num_experts)])
        self.register_buffer("mean", torch.tensor([0.0]))  # standard normal of the smooth load estimate
        self.register_buffer("std", torch.tensor([1.0]))

    # -- cross-modal calibration ---------------------------------------------------------------------------------
    def calibrate_prompt(self, prompt: Tensor, probs: Tensor | None) -> Tensor:
        """FiLM the per-image prompt (B, P) with the prior (``bayes`` only; identity otherwise)."""
        if probs is None or self.calibration != "bayes" or self.prompt_film is None:
            return prompt
        gamma, beta = self.prompt_film(probs).chunk(2, dim=-1)  # (B, P) each
        return prompt * (1 + gamma) + beta  # (B, P)

    def prior_bias(self, probs: Tensor) -> Tensor:
        """Per-image additive router bias (B, E) from class probabilities ``probs`` (B, K)."""
        if self.calibration == "release":
            return self.gate_boost * self.degra_proj(probs)  # (B, E)
        pi = probs @ self.prior_assign.softmax(dim=-1)  # (B, E) prior over experts
        p = probs.clamp_min(1e-12)
        entropy = -(p * p.log()).sum(dim=-1, keepdim=True)  # (B, 1)
        confidence = (1 - entropy / math.log(max(self.num_classes, 2))).clamp(0, 1)  # (B, 1): 0 for uniform p
        return F.softplus(self.prior_strength) * confidence * pi.clamp_min(1e-12).log()  # (B, E)

    # -- routing -------------------------------------------------------------------------------------------------
    def route(self, tokens: Tensor, bias: Tensor | None = None) -> Routing:
        """Noisy top-k routing of router inputs ``tokens`` (N, C+P) with an optional per-token bias (N, E)."""
        content = tokens @ self.w_g  # (N, E)
        clean = content if bias is None else content + bias  # (N, E)
        noisy = self.noisy_gating and self.training
        if noisy:
            noise_std = F.softplus(tokens @ self.w_n) + 1e-2  # (N, E)
            logits = clean + torch.randn_like(clean) * noise_std  # (N, E)
        else:
            logits = clean
        top_logits, top_idx = logits.topk(min(self.k + 1, self.num_experts), dim=1)  # (N, k+1)
        gates = top_logits[:, : self.k].softmax(dim=1)  # (N, k)
        indices = top_idx[:, : self.k]  # (N, k)
        dense = torch.zeros_like(logits).scatter(1, indices, gates)  # (N, E)
        if noisy and self.k < self.num_experts:
            ref = clean if self.load_with_prior else content
            load = self._smooth_load(ref, logits, noise_std, top_logits)  # (E,)
        else:
            load = (dense > 0).sum(0).to(dense.dtype)  # (E,)
        return Routing(indices, gates, dense.sum(0), load)

    def _smooth_load(self, clean: Tensor, noisy: Tensor, noise_std: Tensor, top: Tensor) -> Tensor:
        """Expected number of tokens per expert: P(expert stays in the top-k if its noise is redrawn), summed."""
        thr_in = top[:, self.k : self.k + 1]  # (N, 1): (k+1)-th value, the bar for an expert already in
        thr_out = top[:, self.k - 1 : self.k]  # (N, 1): k-th value, the bar for an expert outside
        is_in = noisy > thr_in  # (N, E)
        normal = torch.distributions.Normal(self.mean, self.std)
        p_in = normal.cdf((clean - thr_in) / noise_std)  # (N, E)
        p_out = normal.cdf((clean - thr_out) / noise_std)  # (N, E)
        return torch.where(is_in, p_in, p_out).sum(0)  # (E,)

    # -- experts -------------------------------------------------------------------------------------------------
    def dispatch(self, x: Tensor, indices: Tensor, gates: Tensor) -> Tensor:
        """Run each token through its k experts (sorted by expert, no dense E-fold compute) and combine."""
        n, k = indices.shape
        flat = indices.reshape(-1)  # (N*k,)
        order = flat.argsort(stable=True)  # (N*k,) slots grouped by expert
        counts = torch.bincount(flat, minlength=self.num_experts).tolist()
        inputs = x.index_select(0, order // k).split(counts)  # E chunks of (n_e, C)
        outputs = torch.cat([expert(chunk) for expert, chunk in zip(self.el, inputs)])  # (N*k, C)
        inverse = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=order.device))
        y = outputs.index_select(0, inverse).view(n, k, -1)  # (N, k, C) back in slot order
        g = gates.unsqueeze(-1).float()  # (N, k, 1)
        if self.combine == "linear":
            return (g * y.float()).sum(1).to(x.dtype)  # (N, C)
        # log sum_k g_k exp(y_k), stable; a gate that underflowed to 0 drops out (log 0 -> clamp, zero gradient)
        return torch.logsumexp(y.float() + g.clamp_min(1e-30).log(), dim=1).to(x.dtype)  # (N, C)

    def forward(
        self, x: Tensor, prompt: Tensor | None = None, probs: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Routing]:
        """Mix experts over pixels.

        Args:
            x: features (B, C, H, W).
            prompt: projected task prompt (B, P), or None when the layer was built with ``prompt_dim=0``.
            probs: prior class probabilities (B, K), or None when built with ``num_classes=0``.

        Returns:
            The expert mixture (B, C, H, W), the balance loss cv^2(importance) + cv^2(load), and the routing.
        """
        b, _, h, w = x.shape
        tokens = rearrange(x, "b c h w -> (b h w) c")  # (N, C)
        router_in = tokens
        if prompt is not None:
            prompt = self.calibrate_prompt(prompt, probs)  # (B, P)
            router_in = torch.cat([tokens, prompt.repeat_interleave(h * w, dim=0)], dim=1)  # (N, C+P)
        bias = None
        if probs is not None and self.num_classes:
            bias = self.prior_bias(probs).repeat_interleave(h * w, dim=0)  # (N, E)
        routing = self.route(router_in, bias)
        balance = cv_squared(routing.importance) + cv_squared(routing.load)
        y = self.dispatch(tokens, routing.indices, routing.gates)  # (N, C)
        return rearrange(y, "(b h w) c -> b c h w", b=b, h=h, w=w), balance, routing


class DDERBlock(nn.Module):
    """Degradation-aware dynamic expert routing (paper: DDER; release: MCDB): x + MoE(x, fc(prompt), prior).

    Args:
        dim: feature channels C.
        atom_dim: task-prompt width; 0 disables the prompt (the router then sees the pixel features only).
        **moe_kwargs: forwarded to :class:`CLIPGuidedMoE`.
    """

    def __init__(self, dim: int, atom_dim: int, **moe_kwargs) -> None:
        super().__init__()
        self.fc = nn.Linear(atom_dim, dim) if atom_dim else None
        self.model = CLIPGuidedMoE(dim, dim if atom_dim else 0, **moe_kwargs)

    def forward(
        self, x: Tensor, prompt: Tensor | None, probs: Tensor | None, class_names: tuple[str, ...] = (),
        with_stats: bool = True,
    ) -> tuple[Tensor, Tensor, RoutingStats | None]:
        """Return x + expert mixture (B, C, H, W), the balance loss and this call's routing statistics (or None)."""
        d = self.fc(prompt) if self.fc is not None and prompt is not None else None  # (B, C)
        y, balance, routing = self.model(x, d, probs)
        stats = self._stats(routing, probs, x.shape[0], class_names) if with_stats else None
        return x + y, balance, stats

    @torch.no_grad()
    def _stats(self, routing: Routing, probs: Tensor | None, batch: int, names: tuple[str, ...]) -> RoutingStats:
        e = self.model.num_experts
        onehot = F.one_hot(routing.indices, e).sum(1).float()  # (N, E) assignments per token
        class_counts = None
        if probs is not None and probs.shape[-1]:
            per_image = rearrange(onehot, "(b n) e -> b n e", b=batch).sum(1)  # (B, E)
            cls = F.one_hot(probs.argmax(-1), probs.shape[-1]).float()  # (B, K)
            class_counts = cls.t() @ per_image  # (K, E)
        gate_mass = routing.importance.detach().float()
        return RoutingStats(onehot.sum(0), gate_mass, class_counts, tuple(names))
