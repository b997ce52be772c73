import torch

from echorec.data.split import Batch
from echorec.models.base import Objective
from echorec.models.sasrec import SASRec, SASRecConfig


def test_sampled_loss_equals_full_ce_over_the_same_candidates():
    torch.manual_seed(0)
    m = SASRec(50, 8, SASRecConfig(hidden=16, inner=32)).eval()
    seq = torch.randint(1, 51, (6, 8))
    target = torch.randint(1, 51, (6,))
    neg = torch.randint(1, 51, (20,))
    got = m.loss(Batch(seq, target=target), Objective(negatives=neg))
    with torch.no_grad():
        scores = m.predict(seq)  # (6, 50)
    ref = []
    for b in range(6):
        cands = [scores[b, target[b] - 1]] + [scores[b, n - 1] for n in neg if n != target[b]]
        ref.append(-torch.log_softmax(torch.stack(cands), 0)[0])
    torch.testing.assert_close(got, torch.stack(ref).mean(), atol=1e-5, rtol=1e-5)


def test_sampled_loss_trains_end_to_end(tmp_path, seq_file):
    from echorec.cli import main

    out = str(tmp_path / "s")
    assert main(["train", "--model", "sasrec", "--dataset", seq_file, "--out", out, "--epochs", "2", "--loss",
                 "sampled", "--negatives", "10", "--hidden", "16", "--inner", "32", "--progress", "false"]) == 0
