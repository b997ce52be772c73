"""BSARec's frequency layer zeroes its high rFFT bins by a mask (so ONNX export can trace it): the result is the
same, bit for bit, as zeroing them by slice assignment, the formulation of BSARec's official code."""

import pytest
import torch

from echorec.nn.spectral import FrequencyMix


def sliced(layer: FrequencyMix, x: torch.Tensor) -> torch.Tensor:
    spec = torch.fft.rfft(x.float(), dim=1, norm="ortho")
    spec[:, layer.keep:] = 0
    low = torch.fft.irfft(spec, n=x.shape[1], dim=1, norm="ortho").to(x.dtype)
    return layer.ln(x + layer.drop(low + layer.sqrt_beta ** 2 * (x - low)))


@pytest.mark.parametrize("c, length", [(3, 50), (5, 50), (5, 7), (9, 2), (3, 1)])
def test_mask_equals_slice_assignment_bit_for_bit(c, length):
    torch.manual_seed(c * 100 + length)
    layer = FrequencyMix(16, c, dropout=0.0).eval()
    x = torch.randn(4, length, 16)
    assert torch.equal(layer(x), sliced(layer, x))
