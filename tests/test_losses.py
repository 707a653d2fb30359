"""Triplet and GE2E losses against small cases computed with plain numpy loops; the
``conf/loss`` options; the training module's use of them (state-dict layout, no branching)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from deeptalk_ser.training.losses import GE2ELoss, SpeakerLoss, TripletLoss, group_by_speaker, pairwise_distances

LOSS_CONFS = sorted((Path(__file__).resolve().parents[1] / "conf" / "loss").glob("*.yaml"))

# 2 speakers x 2 utterances on the unit circle (angles in degrees)
ANGLES = np.deg2rad([0.0, 40.0, 70.0, 180.0])
POINTS = np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1)
LABELS = np.array([0, 0, 1, 1])


def np_dist(x: np.ndarray, kind: str) -> np.ndarray:
    n = len(x)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if kind == "euclidean":
                d[i, j] = np.sqrt(np.sum((x[i] - x[j]) ** 2))
            else:
                d[i, j] = 1 - x[i] @ x[j] / np.linalg.norm(x[i]) / np.linalg.norm(x[j])
    return d


def np_batch_hard(x: np.ndarray, y: np.ndarray, margin: float, kind: str) -> float:
    d = np_dist(x, kind)
    losses = []
    for a in range(len(x)):
        pos = [d[a, p] for p in range(len(x)) if p != a and y[p] == y[a]]
        neg = [d[a, n] for n in range(len(x)) if y[n] != y[a]]
        if pos and neg:
            losses.append(max(0.0, max(pos) - min(neg) + margin))
    return float(np.mean(losses))


def np_semi_hard(x: np.ndarray, y: np.ndarray, margin: float, kind: str) -> float:
    d = np_dist(x, kind)
    losses = []
    for a in range(len(x)):
        negs = [d[a, n] for n in range(len(x)) if y[n] != y[a]]
        for p in range(len(x)):
            if p == a or y[p] != y[a] or not negs:
                continue
            farther = [v for v in negs if v > d[a, p]]
            dn = min(farther) if farther else max(negs)
            losses.append(max(0.0, d[a, p] - dn + margin))
    return float(np.mean(losses))


def test_batch_hard_hand_case() -> None:
    # Hand check, euclidean, margin 0.5: chords 2 sin(delta/2).
    # anchor 0: pos d(0,40)=0.6840, neg min d(0,70)=1.1472 -> 0.0368
    # anchor 1: pos 0.6840, neg min d(40,70)=0.5176 -> 0.6664
    # anchor 2: pos d(70,180)=1.6383, neg min 0.5176 -> 1.6207
    # anchor 3: pos 1.6383, neg min d(180,40)=1.8794 -> 0.2589
    expected = (0.0368 + 0.6664 + 1.6207 + 0.2589) / 4
    loss = TripletLoss(margin=0.5, mining="batch_hard")(torch.tensor(POINTS), torch.tensor(LABELS))
    assert loss.item() == pytest.approx(expected, abs=2e-4)
    assert loss.item() == pytest.approx(np_batch_hard(POINTS, LABELS, 0.5, "euclidean"), abs=1e-9)


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard"])
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_triplet_random_batches_match_numpy(mining: str, distance: str) -> None:
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(12, 5, dtype=torch.float64), dim=1)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    ref = {"batch_hard": np_batch_hard, "semi_hard": np_semi_hard}[mining](x.numpy(), y.numpy(), 0.3, distance)
    loss = TripletLoss(margin=0.3, mining=mining, distance=distance)(x, y)
    assert loss.item() == pytest.approx(ref, abs=1e-9)
    np.testing.assert_allclose(pairwise_distances(x, distance).numpy(), np_dist(x.numpy(), distance), atol=1e-6)


def test_semi_hard_hand_case() -> None:
    # anchor 0 / pos 1 (d=0.6840): negatives 1.1472, 2.0 -> closest farther 1.1472 -> 0.0368
    # anchor 1 / pos 0 (0.6840): negatives 0.5176, 1.8794 -> 1.8794 -> 0
    # anchor 2 / pos 3 (1.6383): negatives 1.1472, 0.5176 -> none farther -> farthest 1.1472 -> 0.9911
    # anchor 3 / pos 2 (1.6383): negatives 2.0, 1.8794 -> 1.8794 -> 0.2589
    expected = (0.0368 + 0.0 + 0.9911 + 0.2589) / 4
    loss = TripletLoss(margin=0.5, mining="semi_hard")(torch.tensor(POINTS), torch.tensor(LABELS))
    assert loss.item() == pytest.approx(expected, abs=2e-4)


def test_triplet_zero_when_separated_and_gradient_finite() -> None:
    x = torch.tensor([[1.0, 0.0], [0.99, 0.14], [-1.0, 0.0], [-0.99, -0.14]], requires_grad=True)
    y = torch.tensor([0, 0, 1, 1])
    assert TripletLoss(margin=0.2)(x, y).item() == 0.0
    x2 = torch.tensor(POINTS, requires_grad=True)
    TripletLoss(margin=0.5, mining="semi_hard")(x2, torch.tensor(LABELS)).backward()
    assert torch.isfinite(x2.grad).all() and x2.grad.abs().sum() > 0
    # a batch without negatives gives a zero loss that still backpropagates
    single = torch.randn(3, 2, requires_grad=True)
    loss = TripletLoss()(single, torch.zeros(3, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and single.grad is not None


def np_ge2e(e: np.ndarray, w: float, b: float) -> tuple[float, float]:
    """Loss and dL/dw of the GE2E softmax loss, written out with loops."""
    n_spk, n_utt, _ = e.shape
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    total, dw = 0.0, 0.0
    for j in range(n_spk):
        for i in range(n_utt):
            cos = np.zeros(n_spk)
            for k in range(n_spk):
                if k == j:
                    others = [e[k, u] for u in range(n_utt) if u != i]
                    centroid = unit(np.mean(others, axis=0))
                else:
                    centroid = unit(np.mean(e[k], axis=0))
                cos[k] = unit(e[j, i]) @ centroid
            logits = w * cos + b
            p = np.exp(logits - logits.max())
            p /= p.sum()
            total += -np.log(p[j])
            dw += p @ cos - cos[j]
    n = n_spk * n_utt
    return total / n, dw / n


def test_ge2e_hand_case_2x2() -> None:
    # speaker 0: 0 and 40 degrees, speaker 1: 70 and 180 degrees. With 2 utterances the exclusive
    # centroid is the other utterance, so own-speaker cosines are cos(40) and cos(110).
    e = torch.tensor(POINTS.reshape(2, 2, 2))
    own = np.cos(np.deg2rad([40, 40, 110, 110]))
    c1 = np.deg2rad(125)  # speaker 1 centroid direction (mean of 70 and 180)
    c0 = np.deg2rad(20)
    other = np.cos(np.array([0 - c1, np.deg2rad(40) - c1, np.deg2rad(70) - c0, np.pi - c0]))
    logit_own, logit_other = 10 * own - 5, 10 * other - 5
    expected = np.mean(np.log1p(np.exp(logit_other - logit_own)))
    loss_fn = GE2ELoss()
    loss = loss_fn(e.float())
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert loss.item() == pytest.approx(np_ge2e(POINTS.reshape(2, 2, 2), 10.0, -5.0)[0], rel=1e-5)


def test_ge2e_random_and_gradient_scaling() -> None:
    torch.manual_seed(1)
    e = torch.nn.functional.normalize(torch.randn(3, 4, 6, dtype=torch.float64), dim=2)
    ref_loss, ref_dw = np_ge2e(e.numpy(), 10.0, -5.0)
    loss_fn = GE2ELoss().double()
    loss = loss_fn(e)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-9)
    loss.backward()
    assert loss_fn.weight.grad.item() == pytest.approx(0.01 * ref_dw, rel=1e-6)
    assert loss_fn.bias.grad.item() == pytest.approx(0.0, abs=1e-12)  # softmax ignores a shift

    unscaled = GE2ELoss(grad_scale=1.0).double()
    unscaled(e).backward()
    assert unscaled.weight.grad.item() == pytest.approx(ref_dw, rel=1e-6)


def test_ge2e_shares_model_parameters_and_clamps_weight() -> None:
    from deeptalk_ser.embedding.encoders.deeptalk import DeepTalkNet

    net = DeepTalkNet()
    loss_fn = GE2ELoss()
    loss_fn.bind(net)
    assert loss_fn.weight is net.similarity_weight and loss_fn.bias is net.similarity_bias
    e = torch.nn.functional.normalize(torch.randn(2, 3, 4), dim=2, eps=1e-12)
    loss_fn(e).backward()
    assert net.similarity_weight.grad is not None and net.similarity_weight.grad.abs().item() > 0
    with torch.no_grad():
        net.similarity_weight.fill_(-3.0)
    # weight clamped to 1e-6: all logits equal b -> loss = log(n_speakers)
    assert loss_fn(e).item() == pytest.approx(np.log(2), abs=1e-4)
    with pytest.raises(ValueError):
        loss_fn(e[:, :1])


def test_ge2e_takes_a_speaker_ordered_flat_batch() -> None:
    torch.manual_seed(2)
    e = torch.randn(3, 4, 6)
    labels = torch.tensor([7, 7, 7, 7, 2, 2, 2, 2, 5, 5, 5, 5])
    loss_fn = GE2ELoss()
    assert loss_fn(e.reshape(12, 6), labels).item() == pytest.approx(loss_fn(e).item(), rel=1e-6)
    assert torch.equal(group_by_speaker(e.reshape(12, 6), labels), e)
    for bad in ([7, 7, 7, 2, 2, 2, 2, 2, 5, 5, 5, 5],   # unequal runs
                [7, 7, 7, 7, 2, 2, 2, 2, 7, 7, 7, 7],   # a speaker twice
                [7, 2, 7, 2, 7, 2, 7, 2, 5, 5, 5, 5]):  # not speaker-ordered
        with pytest.raises(ValueError):
            loss_fn(e.reshape(12, 6), torch.tensor(bad))
    with pytest.raises(ValueError):
        loss_fn(e.reshape(12, 6))


@pytest.mark.parametrize("path", LOSS_CONFS, ids=lambda p: p.stem)
def test_loss_configs_instantiate_to_working_losses(path: Path) -> None:
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    name = cfg.pop("name")
    assert name == path.stem
    P, K, dim = 4, 3, 16
    head = "embedding_dim" in cfg  # a classification head (aam): sized by the speaker count at bind
    if head:
        cfg["embedding_dim"] = dim
    loss_fn = instantiate(cfg)
    assert isinstance(loss_fn, SpeakerLoss)
    if head:
        loss_fn.bind(torch.nn.Linear(1, 1), n_speakers=P)
    emb = torch.nn.functional.normalize(torch.randn(P * K, dim), dim=1).requires_grad_()
    labels = torch.arange(P).repeat_interleave(K)
    loss = loss_fn(emb, labels)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0


def test_module_state_dict_layout_and_ge2e_scalars_in_the_net() -> None:
    """Keys are those of earlier checkpoints (exact resume) and the trained GE2E scalars are the
    network's own (so exported encoders keep them)."""
    from deeptalk_ser.training.module import SpeakerEncoderModule

    adam = functools.partial(torch.optim.Adam, lr=1e-4, weight_decay=0.0)  # conf/train.yaml's training.optimizer
    ge2e = SpeakerEncoderModule(loss=GE2ELoss(), optimizer=adam, scheduler=None)
    keys = set(ge2e.state_dict())
    assert {"net.similarity_weight", "net.similarity_bias", "loss_fn.weight", "loss_fn.bias"} <= keys
    assert all(k.startswith(("net.", "loss_fn.")) for k in keys)
    triplet = SpeakerEncoderModule(loss=TripletLoss(), optimizer=adam, scheduler=None)
    assert set(triplet.state_dict()) == {k for k in keys if k.startswith("net.")}
    # parameters (so the optimiser's state) in the same order as the bare network's
    assert [p.data_ptr() for p in ge2e.parameters()] == [p.data_ptr() for p in ge2e.net.parameters()]

    torch.manual_seed(3)
    P, K = 3, 2
    frames = torch.randn(P * K, 40, 160)
    labels = torch.arange(P).repeat_interleave(K)
    opt = ge2e.configure_optimizers()
    ge2e.compute_loss(ge2e(frames), labels).backward()
    opt.step()
    assert ge2e.net.similarity_weight.item() != 10.0
    assert ge2e.state_dict()["loss_fn.weight"].item() == ge2e.net.similarity_weight.item()
    assert set(ge2e.loss_fn.metrics()) == {"ge2e_w"} and set(triplet.loss_fn.metrics()) == {"triplet_margin"}
