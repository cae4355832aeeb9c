"""Evaluation: PSNR/SSIM on RGB and BT.601 Y (plus optional pyiqa metrics), per degradation type, with protocol.

Python API (what ``m2restore test``, the benchmarks and ``make demo`` use)::

    from m2restore.eval import evaluate
    res = evaluate("runs/x/checkpoints/best.pt", "mini-cdd11", data_root="data/mini-cdd11", out_dir="runs/x/eval")
    print(res.table()); res.average["psnr_rgb"]; res.to_frame()
"""
from .evaluate import AVERAGE, EvalResults, evaluate, summarise
from .metrics import MetricSet, MetricUnavailable, psnr, rgb_to_y, ssim

__all__ = ["AVERAGE", "EvalResults", "MetricSet", "MetricUnavailable", "evaluate", "psnr", "rgb_to_y", "ssim",
           "summarise"]
