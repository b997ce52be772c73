"""EchoMamba4Rec: padding/max_len independence, the backward branch, ablation switches, determinism."""

import pytest
import torch

from echorec.models.echomamba4rec import EchoMamba4Rec, EchoMamba4RecConfig, reverse_index

N = 40


def model(max_len=12, **kw):
    torch.manual_seed(0)
    return EchoMamba4Rec(N, max_len, EchoMamba4RecConfig(hidden=16, d_state=8, **kw)).eval()


def test_reverse_index_reverses_real_tokens_and_is_an_involution():
    mask = torch.tensor([[False, False, True, True, True], [True] * 5])
    idx = reverse_index(mask)
    assert idx.tolist() == [[0, 1, 4, 3, 2], [4, 3, 2, 1, 0]]
    assert torch.equal(idx.gather(1, idx), torch.arange(5).expand(2, 5))


def test_without_filter_scores_do_not_depend_on_max_len():
    seq = torch.randint(1, N + 1, (3, 7))
    a, b = model(12, filter=False), model(30, filter=False)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(a.predict(seq), b.predict(seq), atol=1e-5, rtol=1e-5)


def test_with_filter_max_len_is_part_of_the_model():
    # The FFT length is max_len, so the same weights give other scores at another max_len.
    a = model(12)
    b = model(12)
    seq = torch.randint(1, N + 1, (3, 7))
    with torch.no_grad():
        torch.testing.assert_close(a.predict(seq), b.predict(torch.nn.functional.pad(seq, (5, 0))))


def test_backward_branch_at_last_position_reads_no_padding():
    m = model(12, filter=False)
    bim = m.blocks[0].bimamba
    x = torch.randn(2, 12, 16)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[:, :5] = False
    x2 = x.clone()
    x2[:, :5] = torch.randn(2, 5, 16) * 100  # anything at the pads
    with torch.no_grad():
        out1, out2 = bim(x, mask), bim(x2, mask)
    torch.testing.assert_close(out1[:, 5:], out2[:, 5:], atol=1e-5, rtol=1e-5)
    # The authors' padded flip does read the pads.
    mp = model(12, filter=False, reverse="padded")
    with torch.no_grad():
        p1, p2 = mp.blocks[0].bimamba(x, mask), mp.blocks[0].bimamba(x2, mask)
    assert not torch.allclose(p1[:, -1], p2[:, -1])


def count(**kw):
    return sum(p.numel() for p in model(**kw).parameters())


def test_each_ablation_switch_changes_parameters_as_expected():
    full = count()
    d, L = 16, 12
    m = model()
    mamba = sum(p.numel() for p in m.blocks[0].bimamba.fwd.parameters())
    ln = 2 * d
    assert full - count(filter=False) == (L // 2 + 1) * d * 2 + ln  # complex weight + its LayerNorm
    assert full - count(backward=False) == mamba + ln  # second Mamba + its LayerNorm
    assert full - count(share_direction_weights=True) == mamba
    glu = (d * 2 * d + 2 * d) + (d * d + d) + ln
    ffn = (d * 4 * d + 4 * d) + (4 * d * d + d) + ln
    assert full - count(glu="none") == glu
    assert count(glu="ffn") - count(glu="none") == ffn
    assert count(combine="gated") - full == 2 * d * d + d
    assert count(combine="concat") - full == 2 * d * d + d
    assert count(position=True) - full == L * d


@pytest.mark.parametrize("kw", [dict(combine="gated"), dict(combine="concat"), dict(glu="ffn"),
                                dict(glu_dropout="standard"), dict(init="mamba"), dict(reverse="padded"),
                                dict(layers=2), dict(position=True)])
def test_variants_run_and_are_deterministic(kw):
    seq = torch.randint(0, N + 1, (4, 12))
    seq[:, -1] = 3
    a, b = model(**kw), model(**kw)
    with torch.no_grad():
        pa, pb = a.predict(seq), b.predict(seq)
    assert torch.isfinite(pa).all() and torch.equal(pa, pb)


def test_init_options():
    authors, mamba = model(init="authors"), model(init="mamba")
    # The authors' re-init zeroes dt_proj's bias; Mamba's own init sets it to softplus^-1 of dt in [1e-3, 0.1].
    assert torch.all(authors.blocks[0].bimamba.fwd.dt_proj.bias == 0)
    assert torch.all(mamba.blocks[0].bimamba.fwd.dt_proj.bias < -2)


def test_bad_option_is_a_clear_error():
    from echorec.errors import EchorecError
    from echorec.models import build_model

    with pytest.raises(EchorecError, match="--combine 'max': use sum, gated, concat"):
        build_model("echomamba4rec", N, {"combine": "max"})


@pytest.mark.parametrize("kw", [{}, dict(combine="gated"), dict(backward=False), dict(layers=2, glu="ffn"),
                                dict(reverse="padded"), dict(share_direction_weights=True, filter=False)])
def test_encode_last_equals_encode_at_last_position(kw):
    m = model(**kw)
    seq = torch.randint(1, N + 1, (5, 12))
    seq[1, :4] = 0
    seq[3, :11] = 0
    with torch.no_grad():
        torch.testing.assert_close(m.encode_last(seq), m.encode(seq)[:, -1], atol=1e-5, rtol=1e-5)


def _branches(bim, x, mask):
    """Both directions of a BiMamba at every position, each after its residual and LayerNorm: (f, b)."""
    f = bim.ln_f(bim.fwd(x, mask) + x)
    return f, bim.forward(x, mask) - f  # combine="sum": forward() is f + b


@pytest.mark.parametrize("reverse", ["real", "padded"])
def test_both_readout_reads_backward_branch_at_first_real_position(reverse):
    """`both` = projection of (forward branch at the last position, backward branch at the first real one); at
    initialisation the projection is the sum, so it equals f[last] + b[first real] of the full-sequence pass."""
    # Mamba's own init: under the authors' N(0, 0.02) the recurrence forgets within a few steps, too fast for
    # the far-away change below to show at float32 resolution.
    m = model(readout="both", reverse=reverse, init="mamba")
    bim = m.blocks[-1].bimamba
    torch.manual_seed(3)
    x = torch.randn(3, 12, 16)
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[1, :5], mask[2, :11] = False, False  # 12, 7 and 1 real tokens
    with torch.no_grad():
        f, b = _branches(bim, x, mask)
        first = (~mask).sum(1)  # column of the first real token
        want = f[:, -1] + b[torch.arange(3), first]
        torch.testing.assert_close(bim.forward_both(x, mask), want, atol=1e-5, rtol=1e-5)
        # The backward branch there has read the whole history through its recurrence: a change in the middle
        # moves it, while at the last position (where the `last` readout reads it) it has read the newest
        # item only.
        x2 = x.clone()
        x2[0, 6] += 1.0
        f2, b2 = _branches(bim, x2, mask)
        assert (b2[0, 0] - b[0, 0]).abs().max() > 1e-5
        torch.testing.assert_close(b2[0, -1], b[0, -1])


def test_mean_readout_is_the_average_over_real_positions():
    m = model(readout="mean", layers=2)
    seq = torch.tensor([[0, 0, 0, 4, 9, 2], [7, 1, 3, 3, 8, 5]])
    with torch.no_grad():
        h = m.encode(seq)
        want = torch.stack([h[0, 3:].mean(0), h[1].mean(0)])
        torch.testing.assert_close(m.encode_last(seq), want, atol=1e-6, rtol=1e-6)


def test_readouts_differ_and_last_is_the_default():
    assert EchoMamba4RecConfig().readout == "last"
    seq = torch.randint(1, N + 1, (4, 9))
    with torch.no_grad():
        out = {r: model(readout=r).encode_last(seq) for r in ("last", "both", "mean")}
    assert not torch.allclose(out["last"], out["both"]) and not torch.allclose(out["last"], out["mean"])
    assert {k for k in model(readout="both").state_dict() if "readout" in k} == {
        "blocks.0.bimamba.readout.weight", "blocks.0.bimamba.readout.bias"}
    assert not any("readout" in k for k in model(readout="both", layers=2).state_dict() if k.startswith("blocks.0."))


def test_both_readout_needs_the_backward_branch():
    from echorec.errors import EchorecError
    from echorec.models import build_model

    with pytest.raises(EchorecError, match="--readout both"):
        build_model("echomamba4rec", N, {"readout": "both", "backward": False}, max_len=12)
