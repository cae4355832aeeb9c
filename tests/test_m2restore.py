"""M2Restore: official key list, MoE routing and balance loss, ablation switches, edge gate, frozen prior."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from m2restore.models.base import RestorationOutput, count_parameters
from m2restore.models.m2restore import M2Restore, UniformPrior, split_release_state_dict
from m2restore.models.mamba_cnn import MambaCNNMixer, edge_map, from_sequences, sobel_magnitude, to_sequences
from m2restore.models.moe import CLIPGuidedMoE, TaskPromptGenerator, cv_squared
from m2restore.registry import build_model, get_config

FIXTURE = Path(__file__).parent / "fixtures" / "m2restore_official_state_dict_shapes.json"
OFFICIAL_PARAMS = 46_830_041


@pytest.fixture(scope="module")
def official() -> nn.Module:
    """The full released network on the meta device (no memory, no forward): structure only."""
    with torch.device("meta"):
        return build_model("m2restore_official")


@pytest.fixture(scope="module")
def prior() -> nn.Module:
    """One random tiny CLIP prior shared by the tiny models (informative enough: non-uniform, nonzero)."""
    from m2restore.clip.prior import build_prior

    return build_prior("tiny", classes="release6")


def tiny(name: str, prior: nn.Module, **overrides) -> M2Restore:
    torch.manual_seed(0)
    return M2Restore(get_config(name, **overrides), prior=prior)


def edgy_images(b: int = 2, size: int = 32) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(b, 3, size, size)


# ----------------------------------------------------------------------------------------------------------------
# The released network
# ----------------------------------------------------------------------------------------------------------------
def test_official_parameter_count_and_state_dict(official: nn.Module) -> None:
    expected = json.loads(FIXTURE.read_text())
    got = {k: list(v.shape) for k, v in official.state_dict().items()}
    assert sorted(set(expected) - set(got)) == [] and sorted(set(got) - set(expected)) == []
    assert {k: v for k, v in got.items() if v != expected[k]} == {}
    assert count_parameters(official, trainable=None) == OFFICIAL_PARAMS
    assert count_parameters(official, trainable=True) == OFFICIAL_PARAMS  # the prior is outside the module tree


def test_official_release_semantics() -> None:
    cfg = get_config("m2restore_official")
    assert (cfg.num_experts, cfg.top_k, cfg.moe_combine, cfg.calibration) == (6, 2, "logsumexp", "release")
    assert (cfg.gate, cfg.scan, cfg.noisy_gating, cfg.balance_weight) == ("learned", "raster", True, 0.01)


def test_split_release_state_dict() -> None:
    state = {"state_dict": {"net.patch_embed.proj.weight": torch.zeros(1), "net.daclip.visual.proj": torch.ones(1),
                            "loss_fn.x": torch.zeros(1)}}
    net, clip = split_release_state_dict(state)
    assert list(net) == ["patch_embed.proj.weight"] and list(clip) == ["visual.proj"]


# ----------------------------------------------------------------------------------------------------------------
# Tiny presets: shapes, gradients, the frozen prior
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["m2restore_tiny", "m2restore_official_tiny"])
def test_tiny_forward_backward(name: str, prior: nn.Module) -> None:
    model = tiny(name, prior).train()
    x = torch.rand(2, 3, 27, 35)  # odd sizes: padded and cropped inside
    out = model(x, return_aux=True)
    assert isinstance(out, RestorationOutput) and out.image.shape == x.shape and torch.isfinite(out.image).all()
    assert set(out.aux_losses) == {"balance"}
    (out.image.abs().mean() + sum(out.aux_losses.values())).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert all(p.grad is None and not p.requires_grad for p in prior.parameters())
    assert model(torch.rand(1, 3, 5, 7)).shape == (1, 3, 5, 7)  # smaller than the task prompt's 9 px


def test_prior_is_outside_parameters_and_state_dict(prior: nn.Module) -> None:
    model = tiny("m2restore_tiny", prior)
    prior_ids = {id(p) for p in prior.parameters()}
    assert prior_ids and not prior_ids & {id(p) for p in model.parameters()}
    state = model.state_dict()
    assert len(state) == len(list(model.parameters())) + len(list(model.buffers()))
    assert not any("text_embed" in k or k.startswith("prior") for k in state)
    model.load_state_dict(state, strict=True)
    model.load_state_dict({**state, "daclip.visual.proj": torch.zeros(2)}, strict=True)  # release checkpoints
    model.train()
    assert not prior.training
    feats = model.run_prior(torch.rand(1, 3, 32, 32))
    assert feats.probs.grad_fn is None and feats.probs.shape == (1, prior.num_classes)


def test_prior_moves_with_model() -> None:
    model = M2Restore(get_config("m2restore_tiny", prior="uniform", prior_classes="release6"))
    assert isinstance(model.prior, UniformPrior) and model.prior.num_classes == 6
    model.double()
    assert model.run_prior(torch.rand(1, 3, 8, 8, dtype=torch.float64)).probs.dtype == torch.float64


def test_routing_statistics_are_per_call(prior: nn.Module) -> None:
    model = tiny("m2restore_tiny", prior).eval()
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        stats = [model(x, return_aux=True).extras["routing"] for _ in range(3)]
    cfg = model.config
    for layer, tokens in (("mcdb1", 2 * 16 * 24), ("mcdb2", 2 * 8 * 12), ("mcdb3", 2 * 4 * 6)):
        assert stats[0][layer].counts.sum() == tokens * cfg.top_k  # this call only, not a running total
        assert stats[0][layer].class_counts.sum() == tokens * cfg.top_k
        assert torch.equal(stats[2][layer].counts, stats[0][layer].counts)
        total = stats[0][layer] + stats[1][layer]
        assert torch.allclose(total.load(), stats[0][layer].load())
    assert not any(isinstance(v, list) and v for m in model.modules() for v in vars(m).values())


# ----------------------------------------------------------------------------------------------------------------
# The MoE layer
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 6])
def test_top_k_selects_exactly_k_experts(k: int) -> None:
    torch.manual_seed(0)
    moe = CLIPGuidedMoE(8, 8, num_experts=6, top_k=k, num_classes=6, router_init="scaled").train()
    routing = moe.route(torch.randn(500, 16))
    assert routing.indices.shape == (500, k) and (routing.gates > 0).all()
    assert all(len(set(row)) == k for row in routing.indices.tolist())
    assert torch.allclose(routing.gates.sum(1), torch.ones(500))


def test_balance_loss_zero_when_uniform_and_grows_with_imbalance() -> None:
    assert cv_squared(torch.full((6,), 7.0)) == 0
    losses = [cv_squared(torch.tensor([1.0 + s, 1, 1, 1, 1, 1 - s / 5])) for s in (0.5, 1.0, 2.0, 4.0)]
    assert all(a < b for a, b in itertools.pairwise(losses))
    moe = CLIPGuidedMoE(6, 0, num_experts=6, top_k=1, num_classes=0, noisy_gating=False).eval()
    with torch.no_grad():
        moe.w_g.copy_(torch.eye(6))
    ids = torch.arange(6).repeat(4)  # 4 tokens per expert: each token prefers "its" expert
    x = torch.eye(6)[ids].t().reshape(1, 6, 4, 6)  # (B, C, H, W) with one-hot pixels
    _, uniform, _ = moe(x)
    _, skewed, _ = moe(torch.eye(6)[torch.zeros(24, dtype=torch.long)].t().reshape(1, 6, 4, 6))
    assert uniform.abs() < 1e-6 and skewed > 1


@pytest.mark.parametrize("combine", ["logsumexp", "linear"])
def test_sparse_dispatch_matches_dense_reference(combine: str) -> None:
    torch.manual_seed(0)
    moe = CLIPGuidedMoE(8, 0, num_experts=5, top_k=2, num_classes=0, combine=combine)
    x = torch.randn(40, 8)
    routing = moe.route(x)
    dense = torch.stack([expert(x) for expert in moe.el], 1)  # (N, E, C)
    picked = dense.gather(1, routing.indices[..., None].expand(-1, -1, 8))  # (N, k, C)
    g = routing.gates[..., None]
    ref = (g * picked).sum(1) if combine == "linear" else (g * picked.exp()).sum(1).log()
    assert torch.allclose(moe.dispatch(x, routing.indices, routing.gates), ref, atol=1e-5)


def test_noisy_training_balance_reaches_noise_weights() -> None:
    torch.manual_seed(0)
    moe = CLIPGuidedMoE(8, 8, num_experts=6, top_k=2, num_classes=6, calibration="bayes").train()
    _, balance, _ = moe(torch.randn(2, 8, 4, 4), torch.randn(2, 8), torch.softmax(torch.randn(2, 6), -1))
    balance.backward()
    assert moe.w_n.grad is not None and moe.w_n.grad.abs().sum() > 0


def test_bayes_calibration_ignores_an_uninformative_prior() -> None:
    moe = CLIPGuidedMoE(8, 8, num_experts=6, top_k=2, num_classes=4, calibration="bayes")
    with torch.no_grad():
        moe.prior_assign.normal_()
    assert moe.prior_bias(torch.full((3, 4), 0.25)).abs().max() < 1e-6
    assert moe.prior_bias(torch.tensor([[1.0, 0, 0, 0]])).abs().max() > 0.1


def test_task_prompt_is_a_convex_combination_of_atoms() -> None:
    gen = TaskPromptGenerator(atom_num=4, atom_dim=8, hidden=8)
    assert gen(torch.rand(3, 3, 20, 20)).shape == (3, 8)
    assert gen(torch.rand(1, 3, 4, 4)).shape == (1, 8)


# ----------------------------------------------------------------------------------------------------------------
# Dual-stream block: scans and the edge gate
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scan", ["raster", "bidirectional", "four"])
def test_scan_orders_round_trip(scan: str) -> None:
    x = torch.randn(2, 5, 3, 4)
    seqs = to_sequences(x, scan)
    assert seqs.shape[0] == 2 * {"raster": 1, "bidirectional": 2, "four": 4}[scan]
    assert torch.equal(from_sequences(seqs, scan, 3, 4), to_sequences(x, "raster"))


@pytest.mark.parametrize("gate,stream_at_g1", [("learned", "global"), ("edge", "local"), ("fixed", None)])
def test_gate_weights_the_documented_stream(gate: str, stream_at_g1: str | None) -> None:
    torch.manual_seed(0)
    mixer = MambaCNNMixer(8, embed_dim=4, gate=gate, d_state=4).eval()
    x, emb, edges = torch.randn(1, 8, 3, 5), torch.randn(1, 4), torch.rand(1, 2, 3, 5)
    with torch.no_grad():
        glob, local = mixer.global_stream(x), mixer.conv_path(x)
        if gate == "learned":
            mixer.gate_net[2].bias.fill_(30.0)  # G -> 1
        elif gate == "edge":
            mixer.edge_gate.dw2.bias.fill_(30.0)  # G -> 1
        out, local_weight = mixer(x, emb, edges)
    expected = {"global": glob, "local": local, None: 0.5 * (glob + local)}[stream_at_g1]
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(local_weight, torch.full_like(local_weight, {"global": 0.0, "local": 1.0, None: 0.5}[
        stream_at_g1]), atol=1e-5)


def test_single_stream_mixers_have_no_gate() -> None:
    x = torch.randn(1, 8, 3, 5)
    cnn_only = MambaCNNMixer(8, embed_dim=4, gate="edge", use_mamba=False)
    mamba_only = MambaCNNMixer(8, embed_dim=4, gate="learned", use_cnn=False, d_state=4)
    with torch.no_grad():
        assert torch.equal(cnn_only(x)[0], cnn_only.conv_path(x)) and cnn_only(x)[1] is None
        assert torch.equal(mamba_only(x)[0], mamba_only.global_stream(x))
    assert cnn_only.edge_gate is None and mamba_only.gate_net is None and mamba_only.mamba is not None


def test_edge_map_sees_edges_and_not_flat_images() -> None:
    flat = torch.full((1, 3, 32, 32), 0.4)
    step = flat.clone()
    step[..., 16:] = 0.9
    assert sobel_magnitude(flat).abs().max() == 0
    assert edge_map(flat, (4, 4)).abs().max() == 0
    assert edge_map(step, (4, 4)).amax() > 0.5


def test_edge_gate_receives_the_edge_map(prior: nn.Module) -> None:
    model = tiny("m2restore_tiny", prior).eval()
    seen = []
    model.latent[0].ssm.edge_gate.register_forward_hook(lambda mod, args, out: seen.append(args[1]))
    flat = torch.full((1, 3, 32, 32), 0.5)
    with torch.no_grad():
        out = model(flat, return_maps=True)
        model(edgy_images(1))
    assert seen[0].shape == (1, 2, 4, 4) and seen[0].abs().max() == 0 and seen[1].abs().max() > 0
    assert len(out.extras["gate_maps"]) == model.config.num_blocks[3]
    assert out.extras["gate_maps"][0].shape == (1, 1, 4, 4)


# ----------------------------------------------------------------------------------------------------------------
# Ablation switches: each changes the computation it names, and nothing upstream of it
# ----------------------------------------------------------------------------------------------------------------
ABLATIONS = [
    # (override, modules whose output must not change, module whose output must change, allowed key changes)
    ({"use_clip_prior": False}, ["task_prompt", "patch_embed"], "mcdb1", ("mcdb", "latent")),
    ({"use_task_prompt": False}, ["patch_embed"], "mcdb1", ("task_prompt", "mcdb")),
    ({"use_moe": False}, ["patch_embed"], "encoder_level1", ("task_prompt", "mcdb")),
    ({"use_mamba": False}, ["encoder_level3"], "latent.0", ("latent",)),
    ({"use_cnn": False}, ["encoder_level3"], "latent.0", ("latent",)),
    ({"gate": "fixed"}, ["encoder_level3"], "latent.0", ("latent",)),
    ({"gate": "learned"}, ["encoder_level3"], "latent.0", ("latent",)),
    ({"scan": "four"}, ["encoder_level3"], "latent.0", ()),
    ({"moe_combine": "linear"}, ["patch_embed", "task_prompt"], "mcdb1", ()),
    ({"calibration": "release"}, ["patch_embed", "task_prompt"], "mcdb1", ("mcdb",)),
    ({"num_experts": 4}, ["patch_embed", "task_prompt"], "mcdb1", ("mcdb",)),
    ({"top_k": 1}, ["patch_embed", "task_prompt"], "mcdb1", ()),
]


def _outputs(model: nn.Module, names: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    got: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module: nn.Module, args: tuple, out) -> None:
            got[name] = out[0] if isinstance(out, tuple) else out
        return hook

    mods = dict(model.named_modules())
    hooks = [mods[n].register_forward_hook(keep(n)) for n in names if n in mods]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return got


@pytest.mark.parametrize("override,same,changed,keys", ABLATIONS, ids=[str(a[0]) for a in ABLATIONS])
def test_ablation_switch(override: dict, same: list[str], changed: str, keys: tuple, prior: nn.Module) -> None:
    base = tiny("m2restore_tiny", prior).eval()
    with torch.no_grad():  # move off the neutral initialisation (zero-init FiLM, uniform expert prior, ...)
        for p in base.parameters():
            p.add_(0.1 * torch.randn_like(p))
    variant = tiny("m2restore_tiny", prior, **override).eval()
    b_state, v_state = base.state_dict(), variant.state_dict()
    differing = {k for k in set(b_state) ^ set(v_state)} | {
        k for k in set(b_state) & set(v_state) if b_state[k].shape != v_state[k].shape
    }
    assert all(k.startswith(keys) for k in differing), sorted(differing)[:5]
    shared = {k: v for k, v in b_state.items() if k in v_state and v_state[k].shape == v.shape}
    variant.load_state_dict(shared, strict=False)
    x = edgy_images()
    b_out, v_out = _outputs(base, same + [changed], x), _outputs(variant, same + [changed], x)
    compared = [n for n in same if n in b_out and n in v_out]
    assert compared
    for name in compared:
        assert torch.equal(b_out[name], v_out[name]), name
    assert not torch.allclose(b_out[changed], v_out[changed], atol=1e-6)
