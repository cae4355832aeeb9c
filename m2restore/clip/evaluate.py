"""Zero-shot evaluation of a degradation prior: per-type accuracy and a confusion matrix (CSV and PNG).

Two accuracies are reported. ``accuracy`` is the dataset's own N-way task (11-way on CDD-11): the argmax over
the classes the dataset contains. ``accuracy_full`` takes the argmax over every class of the prior (K=13 for
the default bank), so an image called "raindrop" counts as wrong.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .prior import DegradationPrior


def _as_prior(prior: DegradationPrior | str | Path) -> DegradationPrior:
    if isinstance(prior, DegradationPrior):
        return prior
    from .prior import build_prior

    text = str(prior)
    return build_prior(text) if text.split(":", 1)[0] in ("tiny", "openclip", "local", "daclip") \
        else build_prior(checkpoint=text)


@torch.no_grad()
def predict(prior: DegradationPrior, images: list[torch.Tensor], batch_size: int = 64,
            progress: bool = True) -> torch.Tensor:
    """Prior probabilities (N, K) on the CPU for uint8 images (3, H, W), computed on the prior's device."""
    from tqdm.auto import tqdm

    device = prior.text_embed.device
    out = []
    for start in tqdm(range(0, len(images), batch_size), disable=not progress, desc="clip eval"):
        chunk = images[start:start + batch_size]
        if len({tuple(im.shape) for im in chunk}) == 1:
            out.append(prior(torch.stack(chunk).to(device).float() / 255.0).probs.cpu())  # (b, K)
        else:
            out += [prior(im[None].to(device).float() / 255.0).probs.cpu() for im in chunk]
    return torch.cat(out)  # (N, K)


def evaluate_prior(prior: DegradationPrior | str | Path, data: str | Path, split: str = "test",
                   out_dir: str | Path | None = None, batch_size: int = 64, progress: bool = True,
                   device: str | torch.device | None = None) -> dict[str, Any]:
    """Zero-shot accuracy of a prior on a CDD-11-layout split; optionally write the confusion matrix.

    Args:
        prior: a prior, a ``clip train`` checkpoint path, or a ``build_prior`` source string.
        data: dataset root.
        split: ``test`` (held-out photographs) or ``train``.
        out_dir: when given, writes ``confusion.csv``, ``confusion.png`` and ``eval.json`` there.
        batch_size: images per forward pass.
        progress: show a progress bar.
        device: where to run the prior (``cpu``, ``cuda``); None keeps the prior where it is.

    Returns:
        ``accuracy`` (dataset's N-way), ``accuracy_full`` (K-way), ``per_type`` accuracies, ``confusion``
        (a pandas DataFrame, rows = true type, columns = predicted type, counts), ``confused`` (the most frequent
        off-diagonal pairs) and ``n``.
    """
    import pandas as pd

    from .finetune import read_split

    if device is not None:
        from .prior import resolve_device

        device = resolve_device(device)
    prior = _as_prior(prior)
    if device is not None:
        prior = prior.to(device)
    split_data = read_split(data, split, prior.class_names)
    probs = predict(prior, split_data.images, batch_size, progress)  # (N, K)
    present = sorted(set(split_data.labels.tolist()))
    pred_full = probs.argmax(dim=1)  # (N,)
    pred = torch.tensor(present)[probs[:, present].argmax(dim=1)]  # (N,) restricted to the dataset's types
    labels = split_data.labels
    names = prior.class_names
    order = [names.index(t) for t in split_data.types]
    conf = torch.zeros(len(order), len(order), dtype=torch.long)
    pos = {k: i for i, k in enumerate(order)}
    for t, p in zip(labels.tolist(), pred.tolist()):
        conf[pos[t], pos[p]] += 1
    type_names = [names[k] for k in order]
    confusion = pd.DataFrame(conf.numpy(), index=type_names, columns=type_names)
    confusion.index.name, confusion.columns.name = "true", "predicted"
    per_type = {n: float(conf[i, i] / conf[i].sum().clamp(min=1)) for i, n in enumerate(type_names)}
    off = [(type_names[i], type_names[j], int(conf[i, j])) for i in range(len(order)) for j in range(len(order))
           if i != j and conf[i, j] > 0]
    result = {
        "accuracy": float((pred == labels).float().mean()),
        "accuracy_full": float((pred_full == labels).float().mean()),
        "per_type": per_type,
        "confusion": confusion,
        "confused": sorted(off, key=lambda x: -x[2])[:8],
        "n": int(labels.numel()),
        "num_classes": prior.num_classes,
        "source": prior.source,
    }
    if out_dir is not None:
        write_report(result, out_dir)
    return result


def write_report(result: dict[str, Any], out_dir: str | Path) -> None:
    """Write ``confusion.csv``, ``confusion.png`` (row-normalised heat map) and ``eval.json``."""
    from matplotlib.figure import Figure  # no pyplot: never switches the caller's (e.g. a notebook's) backend

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    conf = result["confusion"]
    conf.to_csv(out / "confusion.csv")
    rates = conf.div(conf.sum(axis=1).clip(lower=1), axis=0)
    fig = Figure(figsize=(1.0 + 0.55 * len(conf), 0.8 + 0.5 * len(conf)))
    ax = fig.add_subplot()
    im = ax.imshow(rates.to_numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(conf)), conf.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(conf)), conf.index)
    for i in range(len(conf)):
        for j in range(len(conf)):
            if conf.iat[i, j]:
                ax.text(j, i, str(conf.iat[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rates.iat[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"zero-shot accuracy {result['accuracy']:.1%} (n={result['n']})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=120)
    keys = ("accuracy", "accuracy_full", "per_type", "confused", "n", "num_classes", "source")
    summary = {k: result[k] for k in keys}
    (out / "eval.json").write_text(json.dumps(summary, indent=2))
