import torch

from echorec.models.sasrec import SASRec, SASRecConfig


def test_encode_last_equals_encode_at_last_position():
    torch.manual_seed(0)
    m = SASRec(20, 10, SASRecConfig()).eval()
    s = torch.randint(1, 21, (5, 10))
    s[1, :4] = 0
    with torch.no_grad():
        torch.testing.assert_close(m.encode_last(s), m.encode(s)[:, -1], atol=1e-5, rtol=1e-5)


def test_config_defaults_follow_recbole():
    c = SASRecConfig()
    assert (c.hidden, c.layers, c.heads, c.inner, c.dropout, c.attn_dropout) == (64, 2, 2, 256, 0.5, 0.5)
