"""Sequence-model operators: the selective scan and the Mamba mixer.

``selective_scan`` matches ``mamba_ssm``'s ``selective_scan_fn``; ``scan_backend`` names the implementation a
call takes ("numba_cpu" on the CPU when numba imports, "mamba_ssm_cuda" on CUDA when mamba_ssm imports,
"torch_fast" otherwise). ``Mamba`` is checkpoint-compatible with ``mamba_ssm.Mamba``.
"""

from .mamba import Mamba
from .selective_scan import (
    scan_backend,
    selective_scan,
    selective_scan_numba,
    selective_scan_ref,
    selective_scan_torch,
)

__all__ = [
    "Mamba",
    "scan_backend",
    "selective_scan",
    "selective_scan_numba",
    "selective_scan_ref",
    "selective_scan_torch",
]
