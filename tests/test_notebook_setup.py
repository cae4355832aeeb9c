"""The notebooks' shared set-up (``m2restore.notebook``): output folder, device check, seeding, data and prior."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from m2restore import notebook as nb
from m2restore.data import build_dataset
from m2restore.data.degrade import CDD11_TYPES


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake checkout ``tmp/repo`` (with ``notebooks/``) as the package's ROOT; the working directory is ``tmp/w``."""
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    (tmp_path / "w").mkdir()
    monkeypatch.setattr(nb, "ROOT", root)
    monkeypatch.chdir(tmp_path / "w")
    return root


def test_setup_uses_the_given_out_dir(checkout: Path, tmp_path: Path) -> None:
    out = nb.setup("07_training", str(tmp_path / "mine" / "deep"))
    assert out == tmp_path / "mine" / "deep" and out.is_dir()
    assert not (checkout / "notebooks" / "_outputs").exists()


def test_setup_defaults_to_the_checkouts_outputs(checkout: Path) -> None:
    out = nb.setup("07_training")
    assert out == checkout / "notebooks" / "_outputs" / "07_training" and out.is_dir()


def test_setup_outside_a_checkout_writes_under_the_working_directory(
    checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nb, "ROOT", tmp_path / "site-packages")  # an installed package: no notebooks/ beside it
    out = nb.setup("00_overview")
    assert out == Path("_outputs") / "00_overview"
    assert (tmp_path / "w" / "_outputs" / "00_overview").is_dir()


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_setup_refuses_a_missing_cuda_device(checkout: Path, monkeypatch: pytest.MonkeyPatch, device: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=rf"device='{device}' but CUDA is not available.*device='cpu'"):
        nb.setup("06_full_model", device=device)
    nb.setup("06_full_model", device="cpu")  # the CPU never needs CUDA


def test_setup_seeds_torch(checkout: Path) -> None:
    nb.setup("05_moe", seed=3)
    first = torch.rand(4)
    nb.setup("05_moe", seed=3)
    assert torch.equal(torch.rand(4), first)
    nb.setup("05_moe", seed=4)
    assert not torch.equal(torch.rand(4), first)


def test_shared_data_given_found_and_missing(checkout: Path, tmp_path: Path) -> None:
    assert nb.shared_data("clean") is None  # no shared/ beside the checkout
    shared = tmp_path / "shared" / "data" / "clean"
    shared.mkdir(parents=True)
    assert nb.shared_data("clean") == shared  # beside the checkout
    mine = tmp_path / "photos"
    mine.mkdir()
    assert nb.shared_data("clean", str(mine)) == mine
    with pytest.raises(FileNotFoundError, match=r"real_pairs_dir='.*nowhere' is not a folder\. Fix: look again\."):
        nb.shared_data("real_pairs", str(tmp_path / "nowhere"), hint="look again")


def test_resolve_data_order(checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[tuple[Path, dict]] = []
    monkeypatch.setattr("m2restore.data.make_mini_cdd11", lambda root, **kw: built.append((root, kw)) or root)
    out = tmp_path / "out"
    assert nb.resolve_data("/some/cdd11", out, smoke=False, dataset="cdd11") == Path("/some/cdd11")
    with pytest.raises(ValueError, match="dataset 'cdd11' needs data_root"):
        nb.resolve_data("", out, smoke=False, dataset="cdd11")
    assert nb.resolve_data("", out, smoke=False) == out / "mini-cdd11" and built[-1] == (out / "mini-cdd11", {})

    demo = checkout / "data" / "mini-cdd11"
    demo.mkdir(parents=True)
    (demo / "mini_info.json").write_text("{}")
    n_built = len(built)
    assert nb.resolve_data("", out, smoke=False) == demo and len(built) == n_built  # `make demo`'s, not rebuilt
    assert nb.resolve_data("", out, smoke=True) == out / "mini-cdd11"  # smoke mode ignores it: tiny and fresh
    assert built[-1] == (out / "mini-cdd11", nb.SMOKE_MINI)


def test_resolve_data_builds_a_tiny_dataset_in_smoke_mode(checkout: Path, tmp_path: Path) -> None:
    root = nb.resolve_data("", tmp_path / "out", smoke=True)
    assert root == tmp_path / "out" / "mini-cdd11"
    params = json.loads((root / "mini_info.json").read_text())["params"]
    assert (params["size"], params["n_train"], params["n_test"]) == (64, 2, 1)
    test_set = build_dataset("mini-cdd11", root, "test", patch_size=None)  # what the notebooks then read
    assert len(test_set) == len(CDD11_TYPES) and test_set[0]["input"].shape[-2:] == (64, 64)


def test_resolve_prior_order(
    checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    trained: list[tuple] = []

    def fake_train(data: Path, out: Path, minutes: float, threads: int) -> tuple[Path, dict]:
        trained.append((data, out, minutes))
        return out / "prior.pt", {"steps": 7, "eval": {"accuracy": 0.5}}

    monkeypatch.setattr("m2restore.bench.demo.train_tiny_prior", fake_train)
    data, out = tmp_path / "data", tmp_path / "out"
    assert nb.resolve_prior("", data, out, smoke=True, minutes=1.0) is None  # smoke: the untrained prior
    assert nb.resolve_prior("", data, out, smoke=False, minutes=1.5) == out / "clip-prior" / "prior.pt"
    assert trained == [(data, out / "clip-prior", 1.5)] and "7 steps, test accuracy 50.0%" in capsys.readouterr().out

    demo = checkout / "data" / "clip-prior-tiny" / "prior.pt"
    demo.parent.mkdir(parents=True)
    demo.write_bytes(b"")
    for smoke in (True, False):  # `make demo`'s prior wins over training, in smoke mode too
        assert nb.resolve_prior("", data, out, smoke=smoke, minutes=1.0) == demo
    assert nb.resolve_prior("mine.pt", data, out, smoke=True, minutes=1.0) == Path("mine.pt")
    assert nb.resolve_prior("mine.pt", data, out, smoke=False, minutes=1.0, model="m2restore_tiny") == Path("mine.pt")
    for model in ("promptir_tiny", "m2restore_official"):  # no tiny CLIP prior to feed
        assert nb.resolve_prior("mine.pt", data, out, smoke=False, minutes=1.0, model=model) is None
    assert len(trained) == 1


def test_centre_square_crops_the_centre_and_resizes_on_8_bit_levels() -> None:
    photo = np.random.default_rng(0).random((40, 60, 3))  # (H, W, 3), landscape
    same = nb.centre_square(photo, 40)  # no resize: the centre 40 x 40, quantised
    assert same.dtype == np.float32 and same.shape == (40, 40, 3)
    np.testing.assert_allclose(same, np.floor(photo[:, 10:50] * 255 + 0.5) / 255, atol=1e-6)
    small = nb.centre_square(photo, 16)  # (16, 16, 3)
    assert small.shape == (16, 16, 3) and 0.0 <= small.min() and small.max() <= 1.0
    np.testing.assert_allclose(small * 255, np.round(small * 255), atol=1e-4)
