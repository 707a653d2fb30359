"""Speaker-embedding training losses: the paper's triplet, the reference code's GE2E, and the
additive angular margin softmax (AAM, "ArcFace") of current speaker toolkits.

DeepTalk's paper says "triplet loss on speaker labels" (no margin or mining given; the DeepVOX
paper it builds on used adaptive triplet mining); the reference code trains with the GE2E
softmax loss; WeSpeaker / SpeechBrain / NeMo train with AAM softmax over a speaker
classification head. All are :class:`SpeakerLoss` modules that ``conf/loss/*.yaml``
instantiate by ``_target_`` (``docs/training_recipe.md``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Mining = Literal["batch_hard", "semi_hard"]
Distance = Literal["euclidean", "cosine"]


class SpeakerLoss(nn.Module):
    """What the training module needs of a loss, so that it never asks which loss it has.

    ``forward(embeddings (N, D), labels (N,))`` on a speaker-ordered P x K batch (each loss
    views the batch as it needs; labels index the training store's speakers); :meth:`bind`
    lets a loss train state that the network's checkpoint format stores, or build a head that
    needs the speaker count; :meth:`set_step` drives margin schedules; :meth:`metrics` are
    scalars worth logging every step.
    """

    def bind(self, net: nn.Module, n_speakers: int | None = None) -> None:
        """Share learnable state with ``net`` / size a head (called once by the training module)."""

    def set_step(self, step: int) -> None:
        """The optimiser step about to be taken (margin warm-up)."""

    def metrics(self) -> dict[str, torch.Tensor]:
        return {}


def warmed_up(target: float, step: int, warmup_steps: int) -> float:
    """``target`` ramped linearly from 0 over ``warmup_steps`` steps (then constant)."""
    if warmup_steps <= 0:
        return float(target)
    return float(target) * min(1.0, max(0, step) / warmup_steps)


def pairwise_distances(embeddings: torch.Tensor, distance: Distance = "euclidean") -> torch.Tensor:
    """(N, D) -> (N, N) distances.

    ``euclidean``: plain L2 distance (for unit vectors, ``sqrt(2 - 2 cos)``), with the square
    clamped at 1e-12 before the root so that coincident points have a finite gradient.
    ``cosine``: ``1 - cos``.
    """
    if distance == "euclidean":
        sq = embeddings.pow(2).sum(dim=1)
        d2 = sq[:, None] + sq[None, :] - 2 * embeddings @ embeddings.T
        return d2.clamp_min(1e-12).sqrt()
    if distance == "cosine":
        unit = F.normalize(embeddings, dim=1)
        return 1 - unit @ unit.T
    raise ValueError(f"unknown distance {distance!r}; use 'euclidean' or 'cosine'")


class TripletLoss(SpeakerLoss):
    """Triplet loss with online mining inside a batch of embeddings with integer speaker labels.

    ``batch_hard`` (Hermans et al. 2017): every anchor with at least one positive and one
    negative contributes ``relu(max_p d(a, p) - min_n d(a, n) + margin)``.
    ``semi_hard`` (FaceNet, as TensorFlow Addons defines it): every (anchor, positive) pair takes
    the closest negative that is farther than the positive; if there is none, the farthest
    negative. The loss ``relu(d(a, p) - d(a, n) + margin)`` is averaged over all such pairs.
    Batches should be speaker-balanced (several utterances per speaker). Default distance is
    Euclidean on the L2-normalised embeddings, the FaceNet convention.
    """

    def __init__(self, margin: float = 0.2, mining: Mining = "batch_hard", distance: Distance = "euclidean",
                 margin_warmup_steps: int = 0) -> None:
        super().__init__()
        if mining not in ("batch_hard", "semi_hard"):
            raise ValueError(f"unknown mining {mining!r}; use 'batch_hard' or 'semi_hard'")
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.target_margin = float(margin)
        self.margin_warmup_steps = int(margin_warmup_steps)
        self.margin = warmed_up(self.target_margin, 0, self.margin_warmup_steps)
        self.mining = mining
        self.distance = distance

    def extra_repr(self) -> str:
        return f"margin={self.target_margin}, mining={self.mining!r}, distance={self.distance!r}"

    def set_step(self, step: int) -> None:
        self.margin = warmed_up(self.target_margin, step, self.margin_warmup_steps)

    def metrics(self) -> dict[str, torch.Tensor]:
        return {"triplet_margin": torch.tensor(self.margin)}

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
            raise ValueError(f"expected (N, D) embeddings and (N,) labels, got {tuple(embeddings.shape)} "
                             f"and {tuple(labels.shape)}")
        d = pairwise_distances(embeddings, self.distance)
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        pos, neg = same & ~eye, ~same
        if self.mining == "batch_hard":
            hardest_pos = d.masked_fill(~pos, float("-inf")).amax(dim=1)
            hardest_neg = d.masked_fill(~neg, float("inf")).amin(dim=1)
            valid = pos.any(dim=1) & neg.any(dim=1)
            losses = F.relu(hardest_pos - hardest_neg + self.margin)[valid]
        else:
            d_ap = d[:, :, None]  # (anchor, positive, 1)
            d_an = d[:, None, :]  # (anchor, 1, negative)
            farther = neg[:, None, :] & (d_an > d_ap)  # (anchor, positive, negative)
            closest_farther = d_an.masked_fill(~farther, float("inf")).amin(dim=2)
            farthest = d.masked_fill(~neg, float("-inf")).amax(dim=1, keepdim=True).expand_as(d)
            chosen = torch.where(farther.any(dim=2), closest_farther, farthest)
            pairs = pos & neg.any(dim=1, keepdim=True)
            losses = F.relu(d - chosen + self.margin)[pairs]
        if losses.numel() == 0:  # no anchor has both a positive and a negative
            return embeddings.sum() * 0.0
        return losses.mean()


class _ScaleGrad(torch.autograd.Function):
    """Identity forward, gradient times ``scale`` backward (no hooks: copy/pickle safe)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad * ctx.scale, None


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` unchanged, but the gradient reaching ``x`` through this use is multiplied by ``scale``."""
    return _ScaleGrad.apply(x, scale)


def group_by_speaker(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N, D) embeddings of P speakers x K utterances, ordered speaker by speaker -> (P, K, D).

    Raises unless the labels are P runs of the same length K of distinct speakers: a batch in
    another order would silently pair utterances of different speakers.
    """
    if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(f"expected (N, D) embeddings and (N,) labels, got {tuple(embeddings.shape)} "
                         f"and {tuple(labels.shape)}")
    speakers, counts = torch.unique_consecutive(labels, return_counts=True)
    n_utt = int(counts[0])
    if not bool((counts == n_utt).all()) or len(torch.unique(speakers)) != len(speakers):
        raise ValueError(f"labels are not speaker-ordered P x K (run lengths {counts.tolist()})")
    return embeddings.reshape(len(speakers), n_utt, embeddings.shape[1])


class GE2ELoss(SpeakerLoss):
    """Generalised end-to-end softmax loss (Wan et al. 2018), as the DeepTalk reference trains.

    Input: a speaker-ordered (N, D) batch with its labels, or (speakers, utterances, dim)
    embeddings; utterances >= 2. Each utterance is compared with every speaker's centroid (mean
    of that speaker's utterances, re-normalised); for its own speaker the centroid excludes the
    utterance itself. Similarity ``w * cos + b``; the loss is the cross-entropy of every
    utterance against its own speaker, averaged.

    ``w`` and ``b`` are learnable, initialised 10 / -5, with their gradients multiplied by 0.01
    (the reference's ``do_gradient_ops``; done in the graph, so a later gradient clip sees the
    scaled values as in the reference) and ``w`` clamped to >= 1e-6 in use. :meth:`bind` makes
    them the network's ``similarity_weight`` / ``similarity_bias`` (shared, not copied): the
    reference checkpoint layout, which exported encoders keep, stores them there. Note ``b``
    gets no gradient: a constant shift of all logits does not change a softmax.
    """

    def __init__(self, init_weight: float = 10.0, init_bias: float = -5.0, grad_scale: float = 0.01,
                 min_weight: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([float(init_weight)]))
        self.bias = nn.Parameter(torch.tensor([float(init_bias)]))
        self.grad_scale = float(grad_scale)
        self.min_weight = float(min_weight)

    def extra_repr(self) -> str:
        return f"grad_scale={self.grad_scale}, min_weight={self.min_weight}"

    def bind(self, net: nn.Module, n_speakers: int | None = None) -> None:
        """Train ``net.similarity_weight`` / ``similarity_bias``, starting from this loss's values."""
        with torch.no_grad():
            net.similarity_weight.copy_(self.weight)
            net.similarity_bias.copy_(self.bias)
        self.weight = net.similarity_weight
        self.bias = net.similarity_bias

    def metrics(self) -> dict[str, torch.Tensor]:
        return {"ge2e_w": self.weight.detach().float().squeeze()}

    def similarity_matrix(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(S, U, D) -> (S, U, S) scaled similarities of every utterance to every centroid."""
        if embeddings.ndim != 3 or embeddings.shape[1] < 2:
            raise ValueError(f"expected (speakers, utterances >= 2, dim) embeddings, got {tuple(embeddings.shape)}")
        n_spk, n_utt = embeddings.shape[:2]
        unit = F.normalize(embeddings, dim=2)
        total = embeddings.sum(dim=1, keepdim=True)
        incl = F.normalize(total.squeeze(1) / n_utt, dim=1)  # (S, D)
        excl = F.normalize((total - embeddings) / (n_utt - 1), dim=2)  # (S, U, D)
        cos = torch.einsum("sud,kd->suk", unit, incl)
        own = (unit * excl).sum(dim=2)  # (S, U)
        is_own = torch.eye(n_spk, dtype=torch.bool, device=embeddings.device)[:, None, :]
        cos = torch.where(is_own, own[:, :, None], cos)
        w = scale_grad(self.weight, self.grad_scale).clamp_min(self.min_weight)
        b = scale_grad(self.bias, self.grad_scale)
        return cos * w + b

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if embeddings.ndim == 2:
            if labels is None:
                raise ValueError("GE2ELoss on (N, D) embeddings needs the speaker labels")
            embeddings = group_by_speaker(embeddings, labels)
        n_spk, n_utt = embeddings.shape[:2]
        logits = self.similarity_matrix(embeddings).reshape(n_spk * n_utt, n_spk)
        target = torch.arange(n_spk, device=embeddings.device).repeat_interleave(n_utt)
        return F.cross_entropy(logits, target)


class AAMSoftmaxLoss(SpeakerLoss):
    """Additive angular margin softmax (Deng et al. 2019; Xiang et al. 2019 for speakers).

    A speaker classification head ``W`` (n_speakers, D) lives in the loss, so it is in the
    Lightning checkpoint (resume) but not in the exported encoder. Logits are
    ``scale * cos(theta_j)`` for other speakers and ``scale * cos(theta_y + m)`` for the own one,
    with the ``cos(theta + m)`` branch replaced by ``cos(theta) - m sin(m)`` past
    ``theta > pi - m`` (keeps the target logit monotonic, as WeSpeaker's ``easy_margin=False``).
    The margin ramps from 0 over ``margin_warmup_steps`` (WeSpeaker's margin scheduler): a full
    margin on a random network keeps the loss near its start. The batch order does not matter.
    """

    def __init__(self, margin: float = 0.2, scale: float = 30.0, margin_warmup_steps: int = 0,
                 embedding_dim: int = 256) -> None:
        super().__init__()
        if margin < 0 or scale <= 0:
            raise ValueError(f"AAM softmax needs margin >= 0 and scale > 0, got margin={margin}, scale={scale}")
        self.target_margin, self.scale = float(margin), float(scale)
        self.margin_warmup_steps, self.embedding_dim = int(margin_warmup_steps), int(embedding_dim)
        self.margin = warmed_up(self.target_margin, 0, self.margin_warmup_steps)
        self.weight: nn.Parameter | None = None

    def extra_repr(self) -> str:
        n = None if self.weight is None else self.weight.shape[0]
        return f"speakers={n}, margin={self.target_margin}, scale={self.scale}, warmup={self.margin_warmup_steps}"

    def bind(self, net: nn.Module, n_speakers: int | None = None) -> None:
        """Create the (n_speakers, D) head (Xavier-normal, as WeSpeaker's projection)."""
        if not n_speakers or n_speakers < 2:
            raise ValueError(f"AAM softmax needs the number of training speakers (>= 2), got {n_speakers}")
        self.weight = nn.Parameter(torch.empty(int(n_speakers), self.embedding_dim))
        nn.init.xavier_normal_(self.weight)

    def set_step(self, step: int) -> None:
        self.margin = warmed_up(self.target_margin, step, self.margin_warmup_steps)

    def metrics(self) -> dict[str, torch.Tensor]:
        return {"aam_margin": torch.tensor(self.margin)}

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, D), (N,) -> (N, n_speakers) margin-adjusted, scaled logits."""
        if self.weight is None:
            raise RuntimeError("AAMSoftmaxLoss.bind(net, n_speakers) was not called")
        if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
            raise ValueError(f"expected (N, D) embeddings and (N,) labels, got {tuple(embeddings.shape)} "
                             f"and {tuple(labels.shape)}")
        if int(labels.max()) >= self.weight.shape[0] or int(labels.min()) < 0:
            raise ValueError(f"speaker label out of range [0, {self.weight.shape[0]}): {labels.min()}..{labels.max()}")
        cos = F.normalize(embeddings, dim=1) @ F.normalize(self.weight, dim=1).T
        m = self.margin
        cos_y = cos.gather(1, labels[:, None]).clamp(-1 + 1e-7, 1 - 1e-7)
        sin_y = (1 - cos_y.pow(2)).sqrt()
        phi = cos_y * math.cos(m) - sin_y * math.sin(m)  # cos(theta + m)
        phi = torch.where(cos_y > math.cos(math.pi - m), phi, cos_y - m * math.sin(m))
        return self.scale * cos.scatter(1, labels[:, None], phi)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(embeddings, labels), labels)
