"""Every registered model against the contract: shapes, finite loss, gradients, batch independence,
causality where claimed."""

import pytest
import torch

from echorec.data.split import Batch
from echorec.models import build_model, model_names

N_ITEMS, L = 30, 12
# Every model, and the variants that change how a model reads out its user representation.
SPECS = model_names() + ["echomamba4rec+readout=both", "echomamba4rec+readout=mean",
                         "echomamba4rec+readout=both+layers=2+reverse=padded"]


def make(spec):
    name, *over = spec.split("+")
    torch.manual_seed(0)
    cfg = dict(o.split("=") for o in over)
    cfg = {k: int(v) if v.isdigit() else v for k, v in cfg.items()}
    return build_model(name, N_ITEMS, cfg or None, max_len=L)


def seqs(B=4, L=L, pad=(0, 3, 7, 11)):
    g = torch.Generator().manual_seed(1)
    s = torch.randint(1, N_ITEMS + 1, (B, L), generator=g)
    for b, p in enumerate(pad[:B]):
        s[b, :p] = 0  # left padding
    return s


@pytest.mark.parametrize("name", SPECS)
def test_shapes_and_finite_loss(name):
    m = make(name)
    s = seqs()
    h = m.encode(s)
    assert h.shape == (4, L, m.hidden)
    assert m.score(h[:, -1]).shape == (4, N_ITEMS)
    assert m.predict(s).shape == (4, N_ITEMS)
    loss = m.loss(Batch(s, target=torch.randint(1, N_ITEMS + 1, (4,))))
    assert loss.ndim == 0 and torch.isfinite(loss)


@pytest.mark.parametrize("name", SPECS)
def test_gradient_reaches_every_parameter(name):
    m = make(name)
    s = torch.randint(1, N_ITEMS + 1, (8, L))
    loss = m.loss(Batch(s, target=torch.randint(1, N_ITEMS + 1, (8,))))
    # Also read every position: some parameters (e.g. the backward Mamba's A in a 1-layer EchoMamba4Rec,
    # whose scored position has read a single token) get no gradient from the last position alone.
    (loss + m.score(m.encode(s)).logsumexp(-1).mean()).backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {pname}"


@pytest.mark.parametrize("name", SPECS)
def test_empty_histories_train_and_score(name):
    """--train-mode bsarec has "no history" samples: all-padding rows, alone (width 1) or among others.
    They must give finite losses and gradients, one learned score vector whatever their width, and not
    change their batch mates' scores."""
    m = make(name)
    s = seqs()
    s[1] = 0  # an empty history among real ones
    loss = m.loss(Batch(s, target=torch.randint(1, N_ITEMS + 1, (4,))))
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    m.zero_grad()
    one_wide = torch.zeros(3, 1, dtype=torch.long)
    loss = m.loss(Batch(one_wide, target=torch.tensor([1, 2, 3])))
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m.predict(s)[1], m.predict(one_wide)[0], atol=1e-5, rtol=1e-5)
        real = m.predict(seqs())
        torch.testing.assert_close(m.predict(s)[[0, 2, 3]], real[[0, 2, 3]], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", SPECS)
def test_scores_do_not_depend_on_batch_mates(name):
    m = make(name).eval()
    s = seqs()
    with torch.no_grad():
        together = m.predict(s)
        for b in range(len(s)):
            alone = m.predict(s[b : b + 1])
            # Alone, crop the row's own padding away too: its result must not depend on the batch width.
            real = int((s[b] > 0).sum())
            cropped = m.predict(s[b : b + 1, L - real :])
            torch.testing.assert_close(alone[0], together[b], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(cropped[0], together[b], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", [n for n in model_names() if build_model(n, 5, None, 4).causal])
def test_causality(name):
    m = make(name).eval()
    s = seqs(pad=(0, 0, 0, 0))
    t = 6
    s2 = s.clone()
    s2[:, t + 1 :] = torch.randint(1, N_ITEMS + 1, s2[:, t + 1 :].shape)
    with torch.no_grad():
        a, b = m.encode(s), m.encode(s2)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


@pytest.mark.parametrize("name", [n for n in model_names() if build_model(n, 5, None, 4).causal])
def test_all_mode_loss_matches_per_position_ce(name):
    m = make(name).eval()
    s = seqs()
    targets = torch.where(s > 0, torch.randint(1, N_ITEMS + 1, s.shape), 0)
    loss = m.loss(Batch(s, targets=targets))
    with torch.no_grad():
        h = m.encode(s)
    real = targets > 0
    ref = torch.nn.functional.cross_entropy(m.score(h[real]), targets[real] - 1)
    torch.testing.assert_close(loss, ref)


@pytest.mark.parametrize("name", SPECS)
def test_same_seed_same_weights(name):
    a, b = make(name), make(name)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


@pytest.mark.parametrize("name", SPECS)
def test_streaming_step_equals_full_sequence_scores(name):
    """init_state/step, one event at a time, score as `predict` over the whole history does (histories up to
    max_len; batch rows stream side by side)."""
    m = make(name).eval()
    s = seqs(pad=(0, 0, 0, 0))
    state = m.init_state(len(s))
    for t in range(L):
        state, scores = m.step(state, s[:, t])
        with torch.no_grad():
            full = m.predict(s[:, : t + 1])
        torch.testing.assert_close(scores, full, atol=1e-4, rtol=1e-4, msg=f"{name} after {t + 1} events")


def test_recurrent_models_stream_in_constant_space():
    for name in ("mamba4rec", "gru4rec"):
        m = make(name).eval()
        assert m.incremental
        state = m.init_state(2)
        sizes = set()
        for t in range(5):
            state, _ = m.step(state, torch.tensor([1 + t, 2 + t]))
            flat = state if torch.is_tensor(state) else [x for st in state for x in st]
            sizes.add(tuple(x.numel() for x in ([flat] if torch.is_tensor(flat) else flat)))
        assert len(sizes) == 1, name  # the state does not grow with the history


@pytest.mark.parametrize("name", SPECS)
def test_score_into_a_reused_buffer_equals_score(name):
    m = make(name).eval()
    h = torch.randn(5, m.hidden)
    buf = torch.full((7, N_ITEMS), float("nan"))  # a larger, dirty buffer: only its first rows are written
    with torch.no_grad():
        out = m.score_into(h, buf[:5])
        assert torch.equal(out, m.score(h)) and out.data_ptr() == buf.data_ptr()


def test_score_into_keeps_an_overridden_score():
    # a plugin that changes only `score` (here: a popularity bias on the tied output) must batch-score with it
    base = make("sasrec").eval()

    class Biased(type(base)):
        def score(self, h):
            return super().score(h) + torch.arange(self.n_items, dtype=h.dtype)

    m = Biased.__new__(Biased)
    m.__dict__.update(base.__dict__)
    h = torch.randn(3, m.hidden)
    with torch.no_grad():
        out = m.score_into(h, torch.empty(3, N_ITEMS))
        assert torch.equal(out, m.score(h)) and not torch.equal(out, base.score(h))
