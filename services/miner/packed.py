"""Linear layers computed by oneDNN, their weights prepacked: the CPU matmuls behind every model call.

torch's default CPU matmul is MKL's sgemm, which on AMD processors runs its AVX2 code path even
where AVX-512 is there; oneDNN picks the processor's best kernels, and a weight packed once into
its blocked layout is not reordered again on every call. Measured on the 2-core AMD EPYC (Zen 5)
reference box, one torch thread, SmolLM2's shapes: 2.2-2.6x faster at 7 to 96 rows, and the
whole next-word search ~2x faster in both serial and batched use. The arithmetic is the same
float32 (or bfloat16) matmul; only the summation order differs (outputs agree to ~1e-6 relative).

A packed layer keeps no dense copy of its weight, so memory does not grow. A weight tied to another
module (SmolLM2's and Gemma-3's output layer is their input embedding) is not packed: it stays one
shared dense tensor, which oneDNN reads as it is. For SmolLM2's output layer that is 8-70% slower
than packed (still 1.6-2.3x MKL); a packed copy would cost 113 MB for SmolLM2, 671 MB for Gemma-3.
`unpack_linears` turns a model back into plain nn.Linear layers (exactly: packing is a lossless
reorder); `degrade` and `copy.deepcopy` work on packed models.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import logging
import mmap
import sys
from collections import Counter

import torch

log = logging.getLogger(__name__)

PACKABLE = (torch.float32, torch.bfloat16)
_ROWS_HINT = 64   # oneDNN chooses the packed layout for about this many rows; 16..128 measure alike
_MADV_DONTNEED = 4


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class PackedLinear(torch.nn.Module):
    """y = x W^T + b by oneDNN, W packed into its blocked layout, or W `tied` (shared with another
    module, left dense). Inference only: no gradient."""

    tied: torch.nn.Parameter | None

    def __init__(self, weight: torch.Tensor, bias: torch.nn.Parameter | None, tied: torch.nn.Parameter | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.bias = bias
        self.packed = None if tied is not None else torch.ops.mkldnn._reorder_linear_weight(weight.detach(), _ROWS_HINT)
        # Kept out of nn.Module's registry: the module that owns the shared weight lists it already.
        object.__setattr__(self, "tied", tied)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).contiguous()
        weight = self.packed if self.tied is None else self.tied
        y = torch.ops.mkldnn._linear_pointwise(rows, weight, self.bias, "none", [], "")
        return y.view(*x.shape[:-1], self.out_features)

    def dense_weight(self) -> torch.nn.Parameter:
        if self.tied is not None:
            return self.tied
        return torch.nn.Parameter(self.packed.to_dense(), requires_grad=False)

    def extra_repr(self) -> str:
        kind = "tied" if self.tied is not None else "packed"
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, {kind}"

    def __deepcopy__(self, memo: dict) -> PackedLinear:
        # The packed (opaque) tensor cannot be deep-copied; pack the copy's weight again instead.
        tied = copy.deepcopy(self.tied, memo)
        weight = tied if tied is not None else self.packed.to_dense()
        clone = PackedLinear(weight, copy.deepcopy(self.bias, memo), tied)
        memo[id(self)] = clone
        return clone


def pack_linears(module: torch.nn.Module) -> int:
    """Replace every nn.Linear of `module` (in place) by a PackedLinear; returns how many.

    Does nothing (returns 0) where oneDNN is missing, the weights are not float32/bfloat16 on the
    CPU, or a packed layer does not reproduce its nn.Linear on a test input.
    """
    linears = [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
               if type(child) is torch.nn.Linear]
    if not linears or not available():
        return 0
    weight = linears[0][2].weight
    if weight.dtype not in PACKABLE or weight.device.type != "cpu":
        return 0
    references = Counter(id(p) for _, p in module.named_parameters(remove_duplicate=False))
    try:
        _check(linears[0][2])
    except Exception as exc:   # an unusual torch build: stay on torch's default kernels
        log.warning("oneDNN packed linear layers are unusable here (%s); using torch's default matmul", exc)
        return 0
    for parent, name, child in linears:
        tied = child.weight if references[id(child.weight)] > 1 else None
        setattr(parent, name, PackedLinear(child.weight, child.bias, tied))
        if tied is None:
            _release_pages(child.weight)
    count = len(linears)
    del linears, child
    # from_pretrained maps the checkpoint file, and packing read every page of it: those pages would
    # stay resident beside the packed copies. Copying out what is still dense (the embedding, norms)
    # drops the last reference to the mapping, so only the packed weights stay in memory.
    with torch.no_grad():
        for tensor in (*module.parameters(), *module.buffers()):
            tensor.data = tensor.data.clone()
    return count


def _release_pages(weight: torch.Tensor) -> None:
    """Drop the resident pages wholly inside a dense weight that was just packed and is never read
    again, so the process's peak memory is not the dense and the packed model together."""
    if sys.platform != "linux":
        return
    page = mmap.PAGESIZE
    start = -(-weight.data_ptr() // page) * page
    end = (weight.data_ptr() + weight.numel() * weight.element_size()) // page * page
    if end > start:
        _libc().madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_DONTNEED)


def unpack_linears(module: torch.nn.Module) -> int:
    """Replace every PackedLinear of `module` (in place) by the nn.Linear it was; returns how many."""
    packed = [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
              if isinstance(child, PackedLinear)]
    for parent, name, child in packed:
        linear = torch.nn.Linear(child.in_features, child.out_features, bias=child.bias is not None,
                                 device="meta")
        linear.weight = child.dense_weight()
        linear.bias = child.bias
        setattr(parent, name, linear)
    return len(packed)


def is_packed(module: torch.nn.Module) -> bool:
    return any(isinstance(m, PackedLinear) for m in module.modules())


@torch.inference_mode()
def _check(linear: torch.nn.Linear) -> None:
    x = torch.randn(3, linear.in_features, generator=torch.Generator().manual_seed(0)).to(linear.weight.dtype)
    want = torch.nn.functional.linear(x, linear.weight, linear.bias).float()
    got = PackedLinear(linear.weight, linear.bias, None)(x).float()
    tolerance = (1e-3 if linear.weight.dtype == torch.float32 else 5e-2) * (1 + float(want.abs().max()))
    if not torch.allclose(got, want, atol=tolerance, rtol=0):
        raise RuntimeError(f"packed output differs by {float((got - want).abs().max()):.3g}")
