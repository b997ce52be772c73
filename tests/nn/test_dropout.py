import torch

from echorec.nn.dropout import Dropout, dropout


def test_rate_scale_and_seed():
    x = torch.ones(200_000)
    torch.manual_seed(3)
    y = dropout(x, 0.2, True)
    kept = (y > 0).float().mean().item()
    assert abs(kept - 0.8) < 0.005
    assert torch.allclose(y[y > 0], torch.full_like(y[y > 0], 1 / 0.8))
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.2, True), y)  # torch.manual_seed fixes the mask
    assert not torch.equal(dropout(x, 0.2, True), y)  # and the next call draws a new one


def test_eval_is_identity_and_gradient_uses_mask():
    d = Dropout(0.5)
    x = torch.randn(1000, requires_grad=True)
    d.eval()
    assert torch.equal(d(x), x)
    d.train()
    y = d(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y.detach() != 0).float() * 2.0)
