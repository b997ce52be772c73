"""--label-smoothing: the loss against a hand-written smoothed CE, in prefix, "all" and BERT4Rec's cloze
training; the trainer passes it to the loss, saves it, and refuses bad values before writing anything."""

import json

import pytest
import torch

from echorec.cli import main
from echorec.data.split import Batch
from echorec.models.base import Objective
from echorec.models.bert4rec import BERT4Rec, BERT4RecConfig
from echorec.models.sasrec import SASRec, SASRecConfig


def smoothed_ce(logits: torch.Tensor, target: torch.Tensor, s: float) -> torch.Tensor:
    """Row by row: the target keeps 1 - s, every one of the n items gets s / n (the target included)."""
    out = []
    for row, t in zip(logits, target):
        logp = torch.log_softmax(row.double(), 0)
        q = torch.full_like(logp, s / len(row))
        q[t] += 1 - s
        out.append(-(q * logp).sum())
    return torch.stack(out).mean()


@pytest.mark.parametrize("s", [0.0, 0.1, 0.5])
def test_prefix_loss_is_the_smoothed_ce(s):
    torch.manual_seed(0)
    m = SASRec(50, 8, SASRecConfig(hidden=16, inner=32)).eval()
    seq, target = torch.randint(1, 51, (6, 8)), torch.randint(1, 51, (6,))
    got = m.loss(Batch(seq, target=target), Objective(label_smoothing=s))
    with torch.no_grad():
        ref = smoothed_ce(m.predict(seq), target - 1, s)
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-5)


def test_all_mode_loss_is_the_smoothed_ce_over_real_positions():
    torch.manual_seed(1)
    m = SASRec(40, 6, SASRecConfig(hidden=16, inner=32)).eval()
    seq = torch.randint(1, 41, (4, 6))
    targets = torch.randint(1, 41, (4, 6))
    seq[0, :3], targets[0, :3] = 0, 0  # a padded row: its first three positions carry no target
    got = m.loss(Batch(seq, targets=targets), Objective(label_smoothing=0.2))
    with torch.no_grad():
        h = m.encode(seq)
        real = targets > 0
        ref = smoothed_ce(m.score(h[real]), targets[real] - 1, 0.2)
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-5)


def test_bert4rec_cloze_loss_is_smoothed_too():
    m = BERT4Rec(30, 8, BERT4RecConfig(hidden=16, inner=32)).eval()
    seq, target = torch.randint(1, 31, (5, 8)), torch.randint(1, 31, (5,))
    losses = []
    for s in (0.0, 0.3):
        torch.manual_seed(7)  # the same cloze mask both times
        losses.append(m.loss(Batch(seq, target=target), Objective(label_smoothing=s)).item())
    torch.manual_seed(7)
    inputs, labels = m.cloze(seq, target)
    with torch.no_grad():
        h = m.encode(inputs)
        sel = labels > 0
        ref = smoothed_ce(m.score(h[sel]), labels[sel] - 1, 0.3)
    assert losses[1] == pytest.approx(ref.item(), abs=1e-5)
    assert losses[0] != pytest.approx(losses[1], abs=1e-3)


def test_a_batch_carries_data_only_and_the_loss_takes_the_objective():
    import dataclasses
    import inspect

    assert [f.name for f in dataclasses.fields(Batch)] == ["seq", "target", "targets"]
    assert list(inspect.signature(SASRec.loss).parameters) == ["self", "batch", "objective"]


def test_training_uses_and_saves_the_smoothing(tmp_path, data, small_sasrec):
    losses = {}
    for s in ("0", "0.3"):
        out = tmp_path / f"s{s}"
        args = ["train", "--dataset", data, *small_sasrec, "--epochs", "1", "--label-smoothing", s, "--out", str(out)]
        assert main(args) == 0
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["train"]["label_smoothing"] == float(s)
        losses[s] = float((out / "history.csv").read_text().splitlines()[1].split(",")[1])
    # Same seed, same batches, and a run repeats to the last digit: any difference is the smoothing reaching the
    # loss. (It is small here: after one epoch on 59 random items the scores are near uniform, where the
    # smoothed and plain CE agree.)
    assert losses["0.3"] != losses["0"]


@pytest.mark.parametrize("bad", ["1", "-0.1", "1.5"])
def test_bad_smoothing_is_refused_before_anything_is_written(refused, bad):
    assert f"--label-smoothing {float(bad)}" in refused("--label-smoothing", bad)


def test_smoothing_with_the_sampled_loss_is_refused(refused):
    assert "--loss full" in refused("--label-smoothing", "0.1", "--loss", "sampled")
