"""Model-specific checks for the baselines (the shared contract is in test_contract.py)."""

import torch

from echorec.models import model_names
from echorec.models.bert4rec import BERT4Rec, BERT4RecConfig
from echorec.models.narm import NARM, NARMConfig


def test_bert4rec_masking_never_touches_padding_and_always_predicts_the_target():
    torch.manual_seed(0)
    m = BERT4Rec(30, 8, BERT4RecConfig(mask_ratio=0.5))
    seq = torch.randint(1, 31, (64, 6))
    seq[:, :3] = 0  # left padding
    target = torch.randint(1, 31, (64,))
    inputs, labels = m.cloze(seq, target)
    assert inputs.shape == (64, 7)
    assert (inputs[:, :3] == 0).all() and (labels[:, :3] == 0).all()  # padding is never masked
    assert (inputs[:, -1] == m.mask_id).all() and torch.equal(labels[:, -1], target)  # the target always is
    masked = inputs == m.mask_id
    assert torch.equal(labels > 0, masked)
    frac = masked[:, 3:-1].float().mean().item()
    assert 0.35 < frac < 0.65  # the other real items at mask_ratio


def test_bert4rec_predicts_through_an_appended_mask():
    torch.manual_seed(0)
    m = BERT4Rec(30, 5, BERT4RecConfig()).eval()
    full = torch.randint(1, 31, (2, 5))
    assert m.with_mask_appended(full)[:, -1].eq(m.mask_id).all()
    assert torch.equal(m.with_mask_appended(full)[:, :-1], full[:, 1:])  # oldest item makes room
    with torch.no_grad():
        torch.testing.assert_close(m.predict(full), m.score(m.encode(m.with_mask_appended(full))[:, -1]))


def test_narm_last_position_fast_path_equals_full_encode():
    torch.manual_seed(0)
    m = NARM(30, 10, NARMConfig()).eval()
    seq = torch.randint(1, 31, (4, 10))
    seq[2, :6] = 0
    with torch.no_grad():
        torch.testing.assert_close(m.encode_last(seq), m.encode(seq)[:, -1], atol=1e-5, rtol=1e-5)


def test_all_baselines_registered():
    assert {"gru4rec", "narm", "bert4rec", "fmlprec", "bsarec"} <= set(model_names())


def test_mamba4rec_last_position_fast_path_equals_full_encode():
    from echorec.models.mamba4rec import Mamba4Rec, Mamba4RecConfig

    for layers in (1, 2):
        torch.manual_seed(0)
        m = Mamba4Rec(30, 10, Mamba4RecConfig(hidden=16, d_state=8, layers=layers)).eval()
        seq = torch.randint(1, 31, (4, 10))
        seq[1, :5] = 0
        with torch.no_grad():
            torch.testing.assert_close(m.encode_last(seq), m.encode(seq)[:, -1], atol=1e-5, rtol=1e-5)
