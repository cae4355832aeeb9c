"""Tests of the CLIP degradation prior (m2restore.clip): preprocessing, freezing, sources, training round trip."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

open_clip = pytest.importorskip("open_clip")

from m2restore.clip import build_prior, list_class_sets, resolve_classes
from m2restore.clip.prior import PretrainedUnavailableError
from m2restore.clip.prompts import canonical_name
from m2restore.clip.tiny import TINY_CLIP, TINY_CLIP_RN, build_clip, model_config, register_tiny_clip

CDD11 = ["low", "haze", "rain", "snow", "low_haze", "low_rain", "low_snow", "haze_rain", "haze_snow",
         "low_haze_rain", "low_haze_snow"]
SMALL = {"vision_cfg.image_size": 32, "vision_cfg.patch_size": 8, "vision_cfg.layers": 2, "text_cfg.layers": 1}


@pytest.fixture(scope="module")
def tiny_prior():
    return build_prior("tiny")


# ---------------------------------------------------------------------------------------------------------------
# Prompt bank and registration
# ---------------------------------------------------------------------------------------------------------------

def test_prompt_bank_sets_and_aliases():
    sets = list_class_sets()
    assert sets["cdd11"] == CDD11
    assert sets["default"] == CDD11 + ["raindrop", "noise"]
    assert sets["release6"] == ["hazy", "noisy", "raindrop", "rainy", "shadowed", "snowy"]
    assert canonical_name("rain_haze") == "haze_rain" and canonical_name("low-light") == "low"
    mixed = resolve_classes(["allweather", "rain_haze", "noise"])  # duplicates collapse, order kept
    assert [c.name for c in mixed] == ["snow", "haze_rain", "raindrop", "noise"]
    assert resolve_classes("release6")[0].captions == ("hazy",)
    assert len(resolve_classes("low")[0].captions) > 1  # template x phrase ensemble
    with pytest.raises(KeyError, match="not a class or alias"):
        resolve_classes(["fog_of_war"])


def test_tiny_architectures_are_registered_with_open_clip():
    from open_clip.modified_resnet import ModifiedResNet

    assert {TINY_CLIP, TINY_CLIP_RN} <= set(register_tiny_clip())
    model = open_clip.create_model(TINY_CLIP)
    assert model.visual.image_size == (128, 128)
    assert sum(p.numel() for p in model.visual.parameters()) < 2_000_000
    resnet = open_clip.create_model(TINY_CLIP_RN)
    assert isinstance(resnet.visual, ModifiedResNet) and resnet.visual.image_size == 128
    assert sum(p.numel() for p in resnet.visual.parameters()) < 2_000_000
    assert resnet.encode_image(torch.rand(2, 3, 128, 128)).shape == (2, 128)


# ---------------------------------------------------------------------------------------------------------------
# The prior module
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("hw", [(150, 200), (90, 70), (128, 301)])
def test_preprocessing_matches_open_clip_transform(tiny_prior, hw):
    from PIL import ImageFilter

    rng = np.random.default_rng(0)
    blocks = (np.kron(rng.random((hw[0] // 5 + 1, hw[1] // 5 + 1, 3)), np.ones((5, 5, 1))) * 255).astype(np.uint8)
    pil = Image.fromarray(blocks[: hw[0], : hw[1]]).filter(ImageFilter.GaussianBlur(2))  # smooth: no ringing
    ref = open_clip.image_transform(tiny_prior.image_size, is_train=False)(pil)  # (3, S, S)
    ours = tiny_prior.preprocess(torch.tensor(np.array(pil)).permute(2, 0, 1)[None].float() / 255)[0]  # (3, S, S)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max() < 0.03  # PIL vs torch antialiased bicubic, uint8 rounding (0.007 per step)


def test_probs_sum_to_one_and_shapes(tiny_prior):
    out = tiny_prior(torch.rand(3, 3, 96, 160))
    assert tiny_prior.num_classes == 13 and tiny_prior.embed_dim == 128
    assert tiny_prior.class_names == list_class_sets()["default"]
    assert out.probs.shape == (3, 13) and out.image_embed.shape == (3, 128) and out.degra_embed is None
    assert torch.allclose(out.probs.sum(-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(out.image_embed.norm(dim=-1), torch.ones(3), atol=1e-4)
    assert build_prior("tiny", classes="release6").num_classes == 6


def test_prior_is_frozen_inside_a_parent_model(tiny_prior):
    class Restorer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.prior = tiny_prior
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.head = nn.Linear(13, 3)

        def forward(self, x):
            probs = self.prior(x).probs  # (B, K)
            return self.conv(x) * self.head(probs)[:, :, None, None]

    model = Restorer().train()
    assert not tiny_prior.training and not any(m.training for m in tiny_prior.modules())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"conv.weight", "conv.bias", "head.weight", "head.bias"}
    before = {k: v.clone() for k, v in tiny_prior.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.rand(2, 3, 64, 64)).square().mean().backward()
    opt.step()
    assert all(p.grad is None for p in tiny_prior.parameters())
    assert all(torch.equal(before[k], v) for k, v in tiny_prior.state_dict().items())
    assert not tiny_prior(torch.rand(1, 3, 32, 32)).probs.requires_grad


def test_prior_follows_a_parent_cast_to_bfloat16(tiny_prior):
    import copy

    prior = copy.deepcopy(tiny_prior).to(torch.bfloat16)  # what a parent's .to(bfloat16) does to its prior
    x = torch.rand(2, 3, 64, 64)
    out = prior(x)
    assert out.probs.dtype == torch.float32 and torch.allclose(out.probs.sum(-1), torch.ones(2), atol=1e-5)
    assert (out.probs - tiny_prior(x).probs).abs().max() < 0.05


# ---------------------------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------------------------

def test_offline_pretrained_request_fails_fast(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a network download was attempted")

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", no_network)
    monkeypatch.setattr(open_clip, "download_pretrained", no_network, raising=False)
    monkeypatch.setattr("urllib.request.urlopen", no_network)
    monkeypatch.delenv("M2RESTORE_ALLOW_DOWNLOAD", raising=False)
    start = time.perf_counter()
    with pytest.raises(PretrainedUnavailableError) as err:
        build_prior("openclip:ViT-B-32:laion2b_s34b_b79k", cache_dir=str(tmp_path))
    msg = str(err.value)
    assert "M2RESTORE_ALLOW_DOWNLOAD=1" in msg and "local:ViT-B-32:" in msg
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in msg
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # allowed, but the hub is declared offline: still no attempt
    with pytest.raises(PretrainedUnavailableError, match="HF_HUB_OFFLINE"):
        build_prior("openclip:ViT-B-32:laion2b_s34b_b79k", cache_dir=str(tmp_path), allow_download=True)
    assert time.perf_counter() - start < 10
    with pytest.raises(ValueError, match="no pretrained tag"):
        build_prior("openclip:ViT-B-32:no_such_tag", cache_dir=str(tmp_path))


def test_local_and_cached_open_clip_weights(tmp_path, monkeypatch):
    cfg = model_config(TINY_CLIP, SMALL)
    register_tiny_clip()
    model = build_clip(cfg, seed=3)
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    cfg_path = tmp_path / "cfgs"
    cfg_path.mkdir()
    (cfg_path / "m2r-test-small.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(cfg_path)
    prior = build_prior(f"local:m2r-test-small:{path}", classes="cdd11")
    x = torch.rand(2, 3, 32, 32)
    expected = nn.functional.normalize(model.encode_image(prior.preprocess(x)), dim=-1)
    assert torch.allclose(prior(x).image_embed, expected, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="not found"):
        build_prior(f"local:m2r-test-small:{tmp_path / 'missing.pt'}")

    # a pretrained tag whose weights are already in the Hugging Face cache loads without any download
    snapshot = tmp_path / "hub" / "models--m2r--test-small" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    torch.save(model.state_dict(), snapshot / "open_clip_pytorch_model.bin")
    tag_cfg = {"hf_hub": "m2r/test-small/", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda arch, tag: tag_cfg if tag == "cached" else {})
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", lambda *a, **k: pytest.fail("downloaded"))
    cached = build_prior("openclip:m2r-test-small:cached", cache_dir=str(tmp_path / "hub"), classes="cdd11")
    assert torch.allclose(cached.mean.flatten(), torch.full((3,), 0.5))
    with torch.no_grad():
        expected = nn.functional.normalize(model.encode_image(cached.preprocess(x)), dim=-1)  # the tag's mean/std
    assert torch.allclose(cached(x).image_embed, expected, atol=1e-5)


def _daclip_file(path: Path, zero_controller: bool) -> tuple[nn.Module, nn.Module]:
    """Write a DA-CLIP-structured checkpoint (reduced width) by key surgery on two plain open_clip CLIPs."""
    cfg = {"embed_dim": 64, "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 128, "layers": 3,
                                           "head_width": 64},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 2}}
    base, control = build_clip(cfg, seed=0), build_clip(cfg, seed=1)
    state = {f"clip.{k}": v for k, v in base.state_dict().items()}
    state |= {k.removeprefix("clip."): v for k, v in state.items() if k.startswith("clip.visual.")}
    for k, v in control.visual.state_dict().items():
        state[f"visual_control.{k.replace('transformer.resblocks', 'transformer.transformer.resblocks')}"] = v
    gen = torch.Generator().manual_seed(2)
    for i in range(3):
        for name, shape in (("weight", (128, 128)), ("bias", (128,))):
            value = torch.zeros(shape) if zero_controller else 0.05 * torch.randn(shape, generator=gen)
            state[f"visual_control.transformer.zero_modules.{i}.{name}"] = value
    state["logit_scale"] = base.logit_scale.detach().clone()
    torch.save({"epoch": 1, "name": "daclip", "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return base, control


@pytest.mark.parametrize("zero_controller", [True, False])
def test_daclip_checkpoint_loads_with_both_embeddings(tmp_path, zero_controller):
    base, control = _daclip_file(tmp_path / "daclip_small.pt", zero_controller)
    prior = build_prior(f"daclip:{tmp_path / 'daclip_small.pt'}")
    assert prior.class_names == ["hazy", "noisy", "raindrop", "rainy", "shadowed", "snowy"]
    assert prior.image_size == 64 and prior.embed_dim == 64
    x = torch.rand(2, 3, 80, 64)
    out = prior(x)
    assert out.degra_embed is not None and out.degra_embed.shape == (2, 64) and out.image_embed.shape == (2, 64)
    assert torch.allclose(out.probs.sum(-1), torch.ones(2), atol=1e-5)
    with torch.no_grad():
        plain = nn.functional.normalize(base.encode_image(prior.preprocess(x)), dim=-1)  # frozen tower alone
        degra = nn.functional.normalize(control.encode_image(prior.preprocess(x)), dim=-1)  # controller tower
    assert torch.allclose(out.degra_embed, degra, atol=1e-5)  # the controller's own path ignores its taps
    assert torch.allclose(out.image_embed, plain, atol=1e-5) == zero_controller  # taps steer the content path
    with pytest.raises(FileNotFoundError, match="huggingface.co/weblzw"):
        build_prior(f"daclip:{tmp_path / 'missing.pt'}")


# ---------------------------------------------------------------------------------------------------------------
# Training, checkpoint round trip, evaluation CLI
# ---------------------------------------------------------------------------------------------------------------

def _toy_dataset(root: Path, types: list[str], per_type: int = 4, size: int = 32) -> Path:
    """A CDD-11-layout folder whose 'degradations' are easy global changes of random textures."""
    rng = np.random.default_rng(0)
    looks = {"low": lambda im: im * 0.2, "haze": lambda im: 0.4 * im + 0.5,
             "rain": lambda im: np.clip(im + (np.arange(size)[None, :, None] % 6 == 0) * 0.6, 0, 1)}
    for split in ("train", "test"):
        for i in range(per_type):
            clean = rng.random((size, size, 3)) * 0.6 + 0.2
            for t in ["clear", *types]:
                im = clean if t == "clear" else looks[t](clean)
                (root / split / t).mkdir(parents=True, exist_ok=True)
                Image.fromarray((im * 255).astype(np.uint8)).save(root / split / t / f"{i:06d}.png")
    return root


def test_clip_train_lowers_loss_and_round_trips(tmp_path):
    from m2restore.clip.cli import main
    from m2restore.clip.finetune import TrainConfig, prior_from_model, train_prior

    data = _toy_dataset(tmp_path / "toy", ["low", "haze", "rain"])
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), arch=TINY_CLIP, classes="low,haze,rain",
                      model_overrides=SMALL, steps=12, minutes=0, batch_size=12, lr=1e-3, warmup=2, captions_per_step=0,
                      resynth=0, progress=False, resume="auto")
    first = train_prior(cfg)
    losses = first["loss_history"]
    assert len(losses) == 12 and np.mean(losses[-3:]) < np.mean(losses[:3])
    resumed = train_prior(cfg, steps=16)  # continues from out/last.pt: 4 more steps
    assert resumed["steps"] == 16 and resumed["loss_history"][:12] == losses

    prior = build_prior(checkpoint=resumed["checkpoint"])
    assert prior.class_names == ["low", "haze", "rain"] and prior.image_size == 32
    ckpt = torch.load(resumed["checkpoint"], weights_only=True)
    model = build_clip(ckpt["model_cfg"])
    model.load_state_dict(ckpt["model"])
    rebuilt = prior_from_model(model, ckpt["model_cfg"], ckpt["preprocess"], resolve_classes("low,haze,rain"))
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(prior(x).probs, rebuilt(x).probs, atol=1e-6)

    assert main(["eval", "--checkpoint", resumed["checkpoint"], "--data", str(data), "--out",
                 str(tmp_path / "ev")]) == 0
    conf = (tmp_path / "ev" / "confusion.csv").read_text().splitlines()
    assert conf[0].split(",")[1:] == ["low", "haze", "rain"] and len(conf) == 4
    assert (tmp_path / "ev" / "confusion.png").stat().st_size > 0
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["n"] == 12


def test_default_recipe_trains_the_resnet_tower_on_fresh_syntheses(tmp_path):
    from open_clip.modified_resnet import ModifiedResNet

    from m2restore.clip.finetune import PriorTrainer, TrainConfig, train_prior
    from m2restore.data.degrade import degrade

    data = _toy_dataset(tmp_path / "toy", ["low", "haze", "rain"], per_type=3)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), classes="low,haze,rain", steps=8, minutes=0,
                      batch_size=9, warmup=2, progress=False, resume="",
                      model_overrides={"vision_cfg.image_size": 32, "vision_cfg.width": 8})
    assert cfg.arch == TINY_CLIP_RN and cfg.resynth > 0 and cfg.device == "cpu"
    trainer = PriorTrainer(cfg)
    assert isinstance(trainer.model.visual, ModifiedResNet)
    train = trainer.train
    assert len(train.clean) == 3 and sorted(set(train.sources)) == [0, 1, 2]
    i = train.kinds.index("rain")  # the first rain image: photo 000000
    clear = np.asarray(Image.open(data / "train" / "clear" / "000000.png"))
    assert np.array_equal(train.clean[train.sources[i]].permute(1, 2, 0).numpy(), clear)  # its own clean photo

    stored = train.images[i].clone()
    gen = torch.Generator()
    gen.set_state(trainer.gen.get_state())
    seed = int(torch.randint(0, 2**31 - 1, (), generator=gen))  # the seed the trainer draws next
    trainer.resynthesise([i])
    fresh = degrade(clear.astype(np.float32) / 255, "rain", seed)  # the dataset's recipe, a new seed
    assert torch.equal(train.images[i], torch.from_numpy((fresh * 255 + 0.5).astype(np.uint8)).permute(2, 0, 1))
    assert not torch.equal(train.images[i], stored)

    summary = train_prior(cfg)
    assert summary["steps"] == 8 and np.isfinite(summary["loss_last"])
    prior = build_prior(checkpoint=summary["checkpoint"])
    assert isinstance(prior.encoder.visual, ModifiedResNet) and not prior.encoder.visual.training
    assert prior(torch.rand(2, 3, 40, 32)).probs.shape == (2, 3)


def test_color_jitter_changes_photometry_per_image_only():
    from m2restore.clip.finetune import color_jitter

    x = torch.rand(4, 3, 8, 8) * 0.5 + 0.25  # (B, 3, H, W)
    gen = torch.Generator().manual_seed(0)
    assert color_jitter(x, 0.0, gen) is x
    y = color_jitter(x, 0.3, gen)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    assert not torch.allclose(y, x)
    ratio = y[:, :, :2, :2].mean(dim=(1, 2, 3)) / x[:, :, :2, :2].mean(dim=(1, 2, 3))  # (B,)
    assert ratio.std() > 0.01  # each image gets its own factors
    flat = torch.full((1, 3, 4, 4), 0.5)
    assert color_jitter(flat, 0.3, gen).std() < 1e-5  # no texture is invented


def test_device_option(tmp_path, monkeypatch):
    from m2restore.clip.cli import main
    from m2restore.clip.finetune import TrainConfig, train_prior

    data = _toy_dataset(tmp_path / "toy", ["low", "haze"], per_type=2)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), arch=TINY_CLIP, classes="low,haze",
                      model_overrides=SMALL, steps=2, minutes=0, batch_size=4, progress=False, resume="")
    summary = train_prior(cfg, device="cpu")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["config"]["device"] == "cpu"
    assert main(["eval", "--checkpoint", summary["checkpoint"], "--data", str(data), "--device", "cpu",
                 "--out", str(tmp_path / "ev")]) == 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="--device cpu"):
        train_prior(cfg, device="cuda")
    with pytest.raises(RuntimeError, match="--device cpu"):
        main(["eval", "--checkpoint", summary["checkpoint"], "--data", str(data), "--device", "cuda"])


def test_seed_benchmark_script_trains_reuses_and_refuses_other_recipes(tmp_path, monkeypatch):
    import importlib.util
    import subprocess

    path = Path(__file__).parents[1] / "benchmarks" / "clip_prior_seeds.py"
    spec = importlib.util.spec_from_file_location("clip_prior_seeds", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    data = _toy_dataset(tmp_path / "toy", ["low", "haze"], per_type=2)
    out = tmp_path / "seeds"
    sets = [a for k, v in SMALL.items() for a in ("--set", f"{k}={v}")]
    train = ["--arch", TINY_CLIP, "--classes", "low,haze", *sets, "--steps", "2", "--minutes", "0",
             "--batch-size", "4", "--resynth", "0", "--threads", "1"]
    argv = ["--data", str(data), "--out", str(out), "--seeds", "0", "1", "--", *train]
    assert script.main(argv) == 0
    record = json.loads((out / "seeds.json").read_text())
    accs = [100 * r["eval"]["accuracy"] for r in record["runs"]]
    assert [r["config"]["seed"] for r in record["runs"]] == [0, 1] and len(accs) == 2
    assert record["accuracy_mean"] == pytest.approx(np.mean(accs)) and all(r["wall_s"] > 0 for r in record["runs"])
    assert record["accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    table = (out / "seeds.md").read_text()
    assert table.count("\n| ") == 3 and "| mean ± std |" in table and (out / "seed1" / "prior.pt").is_file()

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("retrained a finished seed"))
    assert script.main(argv) == 0  # both seeds reused
    assert json.loads((out / "seeds.json").read_text())["runs"][0]["wall_s"] is None
    longer = ["3" if i and train[i - 1] == "--steps" else a for i, a in enumerate(train)]
    with pytest.raises(SystemExit, match="steps"):
        script.main(["--data", str(data), "--out", str(out), "--seeds", "0", "--", *longer])
    with pytest.raises(SystemExit):
        script.main(["--data", str(data), "--out", str(out), "--", "--seed", "3"])
