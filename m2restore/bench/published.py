"""Numbers published by the authors, shown in tables as separate rows labelled 'paper-reported'.

They are copied from the publications (DESIGN.md section 9), not re-measured: full datasets, full-size models, the
papers' own protocols. Tables never average them with our runs. Keys are our dataset names and degradation-type
names; each value is (PSNR dB, SSIM).
"""
from __future__ import annotations

SOURCE = "M2Restore README figures (yz-wang/M2Restore), via DESIGN.md section 9"

# dataset -> model label -> type -> (psnr, ssim)
PUBLISHED: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "cdd11": {  # CDD-11 test set, average over the 11 degradation types
        "PromptIR": {"average": (25.90, 0.850)},
        "OneRestore": {"average": (28.47, 0.878)},
        "AdaIR": {"average": (30.11, 0.909)},
        "M2Restore": {"average": (30.51, 0.911)},
    },
    "allweather": {  # per test subset
        "PromptIR": {"outdoor-rain": (28.75, 0.897), "snow100k-l": (28.99, 0.871), "raindrop": (29.98, 0.915)},
        "AdaIR": {"outdoor-rain": (31.01, 0.923), "snow100k-l": (30.57, 0.902), "raindrop": (30.31, 0.917)},
        "M2Restore": {"outdoor-rain": (32.01, 0.955), "snow100k-l": (31.20, 0.911), "raindrop": (31.73, 0.943)},
    },
}


def published_rows(dataset: str) -> dict[str, dict[str, tuple[float, float]]]:
    """Published (PSNR, SSIM) per model and type for ``dataset``; empty when nothing was published for it."""
    return PUBLISHED.get(dataset, {})
