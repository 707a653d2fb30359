"""The training recipe: AAM softmax, margin warm-up, optimiser / schedule, crop augmentation,
best-checkpoint export with a model card (unit level, plus one train.py run)."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from deeptalk_ser.training.augment import CropAugment, add_noise, coloured_noise, read_noise_segment, speed_perturb
from deeptalk_ser.training.export import card_path, export_with_card, select_best
from deeptalk_ser.training.losses import AAMSoftmaxLoss, TripletLoss
from deeptalk_ser.training.model_card import best_row, render_model_card
from deeptalk_ser.training.optim import (LRSchedule, build_optimizer, check_optimizer, lr_schedule, parameter_groups,
                                          warmup_lambda_lr)
from deeptalk_ser.utils.errors import ConfigError, DataError

# -- AAM softmax -------------------------------------------------------------------------------


def _aam(n: int = 4, margin: float = 0.2, scale: float = 30.0, warmup: int = 0) -> AAMSoftmaxLoss:
    torch.manual_seed(0)
    loss = AAMSoftmaxLoss(margin=margin, scale=scale, margin_warmup_steps=warmup, embedding_dim=8)
    loss.bind(torch.nn.Linear(1, 1), n_speakers=n)
    return loss


def test_aam_without_margin_is_scaled_cosine_softmax() -> None:
    loss = _aam(margin=0.0)
    emb, y = torch.randn(6, 8), torch.tensor([0, 0, 1, 2, 3, 3])
    cos = F.normalize(emb, dim=1) @ F.normalize(loss.weight, dim=1).T
    assert torch.allclose(loss(emb, y), F.cross_entropy(30.0 * cos, y), atol=1e-5)


def test_aam_margin_lowers_only_the_target_logit() -> None:
    loss = _aam(margin=0.3)
    emb, y = torch.randn(6, 8), torch.tensor([0, 1, 1, 2, 3, 0])
    cos = F.normalize(emb, dim=1) @ F.normalize(loss.weight, dim=1).T
    logits = loss.logits(emb, y) / 30.0
    target = torch.zeros_like(cos, dtype=torch.bool).scatter(1, y[:, None], True)
    assert torch.allclose(logits[~target], cos[~target], atol=1e-6)
    theta = torch.acos(cos[target].clamp(-1, 1))
    want = torch.where(theta + 0.3 < math.pi, torch.cos(theta + 0.3), cos[target] - 0.3 * math.sin(0.3))
    assert torch.allclose(logits[target], want, atol=1e-5)
    assert bool((logits[target] < cos[target]).all())


def test_aam_margin_warms_up_and_head_learns() -> None:
    loss = _aam(warmup=10)
    assert loss.margin == 0.0
    loss.set_step(5)
    assert loss.margin == pytest.approx(0.1)
    loss.set_step(50)
    assert loss.margin == pytest.approx(0.2)
    torch.manual_seed(0)
    emb, labels = torch.randn(16, 8), torch.arange(4).repeat_interleave(4)
    emb = emb + 3 * torch.nn.functional.one_hot(labels, 8).float()  # separable speakers
    opt = torch.optim.SGD(loss.parameters(), lr=0.5)
    first = float(loss(emb, labels))
    for _ in range(30):  # the speaker head alone (embeddings fixed) must fit the speakers
        opt.zero_grad()
        loss(emb, labels).backward()
        opt.step()
    assert float(loss(emb, labels)) < 0.5 * first


def test_aam_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="number of training speakers"):
        AAMSoftmaxLoss().bind(torch.nn.Linear(1, 1), n_speakers=None)
    with pytest.raises(ValueError, match="out of range"):
        _aam(n=3)(torch.randn(2, 8), torch.tensor([0, 3]))


def test_triplet_margin_warm_up() -> None:
    loss = TripletLoss(margin=0.4, margin_warmup_steps=4)
    assert loss.margin == 0.0
    loss.set_step(2)
    assert loss.margin == pytest.approx(0.2)
    loss.set_step(9)
    assert loss.margin == pytest.approx(0.4)
    assert TripletLoss(margin=0.4).margin == 0.4  # no warm-up: full margin from the start


# -- optimiser and schedule --------------------------------------------------------------------


def test_schedule_warmup_cosine_step() -> None:
    cos = LRSchedule("cosine", warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0)
    assert cos(10) == pytest.approx(1.0) and cos(60) == pytest.approx(0.55)
    assert cos(110) == pytest.approx(0.1) and cos(10_000) == pytest.approx(0.1)  # held, not periodic
    step = LRSchedule("step", warmup_steps=0, step_size=5, gamma=0.5)
    assert [step(i) for i in (0, 4, 5, 10)] == [1.0, 1.0, 0.5, 0.25]
    assert lr_schedule("constant", 0, None, 0.0, 1000, 0.5, max_steps=100) is None  # no scheduler at all
    assert lr_schedule("cosine", 10, None, 0.0, 1000, 0.5, max_steps=100).total_steps == 100  # null: max_steps


def test_schedule_and_optimizer_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="training.scheduler.total_steps"):
        lr_schedule("cosine", 50, None, 0.0, 1000, 0.5, max_steps=-1)
    with pytest.raises(ConfigError, match="training.scheduler.name"):
        lr_schedule("linear", 0, None, 0.0, 1000, 0.5, max_steps=100)
    with pytest.raises(ConfigError, match="training.scheduler.step_size"):
        lr_schedule("step", 0, None, 0.0, 0, 0.5, max_steps=100)
    adam = functools.partial(torch.optim.Adam, lr=1e-3)
    with pytest.raises(ConfigError, match="training.optimizer: .*momentum"):
        check_optimizer(functools.partial(torch.optim.Adam, lr=1e-3, momentum=0.9), None, 100)
    with pytest.raises(ConfigError, match="training.optimizer: .*learning rate"):
        check_optimizer(functools.partial(torch.optim.Adam, lr=-1.0), None, 100)
    with pytest.raises(ConfigError, match="training.scheduler.total_steps"):
        check_optimizer(adam, _scheduler(name="cosine", warmup_steps=10), max_steps=5)
    check_optimizer(adam, _scheduler(name="cosine", warmup_steps=10), max_steps=50)  # a valid pair passes


def _scheduler(**kw):
    args = {"name": "constant", "warmup_steps": 0, "total_steps": None, "min_lr_ratio": 0.0, "step_size": 1000,
            "gamma": 0.5, **kw}
    return functools.partial(warmup_lambda_lr, **args)


def test_weight_decay_only_on_matrices_and_lambdalr_steps() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    groups = parameter_groups(net.named_parameters(), 0.01)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(net[0].weight)}
    assert len(parameter_groups(net.named_parameters(), 0.0)) == 1  # the pre-decay checkpoints' layout
    cfg = build_optimizer(net.named_parameters(), functools.partial(torch.optim.AdamW, lr=1e-2, weight_decay=0.01),
                          _scheduler(name="cosine", warmup_steps=2, total_steps=6), max_steps=-1)
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    assert isinstance(opt, torch.optim.AdamW) and cfg["lr_scheduler"]["interval"] == "step"
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(5e-3) and lrs[1] == pytest.approx(1e-2) and lrs[-1] < lrs[2]
    plain = build_optimizer(net.named_parameters(), functools.partial(torch.optim.Adam, lr=1e-4, weight_decay=0.0),
                            _scheduler(), max_steps=100)
    assert isinstance(plain, torch.optim.Adam) and len(plain.param_groups) == 1  # constant: no scheduler


# -- the training objects, built from conf/train.yaml ------------------------------------------


def _compose(tmp: Path, *overrides: str, config_dir: Path | None = None):
    """conf/train.yaml as train.py composes it (``config_dir``: an extra config search path)."""
    import os

    from hydra import compose, initialize_config_dir

    from markers import PROJECT_ROOT

    extra = [f"hydra.searchpath=[file://{config_dir}]"] if config_dir else []
    old = os.environ.get("PROJECT_ROOT")
    os.environ["PROJECT_ROOT"] = str(PROJECT_ROOT)
    try:
        with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
            return compose(config_name="train", overrides=[*extra, *overrides, f"paths.output_dir={tmp / 'out'}",
                                                           f"paths.cache_dir={tmp / 'cache'}"])
    finally:
        if old is None:
            del os.environ["PROJECT_ROOT"]
        else:
            os.environ["PROJECT_ROOT"] = old


def _net_params():
    """The module's parameters (network, then loss head), as configure_optimizers sees them."""
    from deeptalk_ser.training.losses import AAMSoftmaxLoss
    from deeptalk_ser.training.module import SpeakerEncoderModule

    return SpeakerEncoderModule(loss=AAMSoftmaxLoss(), optimizer=None, scheduler=None, n_speakers=5)


@pytest.mark.parametrize("experiment", [None, "speaker_recipe"])
def test_optimizer_and_scheduler_nodes_build_the_recipes_as_before(tmp_path: Path, experiment: str | None) -> None:
    """The ``_partial_`` nodes of the reference defaults and of experiment=speaker_recipe give the
    optimiser the previous string switches built (same class, same groups with the same
    hyper-parameters, same learning rate at every step): results do not change."""
    from deeptalk_ser.runs.train import check_config

    cfg = _compose(tmp_path, "trainer.max_steps=300", *([f"experiment={experiment}"] if experiment else []))
    optimizer, scheduler = check_config(cfg)
    module = _net_params()
    built = build_optimizer(module.named_parameters(), optimizer, scheduler, max_steps=cfg.trainer.max_steps)
    # what the string switches built: Adam(one group, lr 1e-4), no scheduler; the recipe: AdamW over
    # (matrices at wd 1e-4, the rest at 0), lr 1e-3, LambdaLR(cosine, warm-up 100, to 2 % at max_steps)
    if experiment is None:
        want = torch.optim.Adam(parameter_groups(module.named_parameters(), 0.0), lr=1e-4)
        assert isinstance(built, torch.optim.Adam) and len(built.param_groups) == 1
        assert built.state_dict()["param_groups"] == want.state_dict()["param_groups"]
        return
    want = torch.optim.AdamW(parameter_groups(module.named_parameters(), 1e-4), lr=1e-3)
    want_sched = torch.optim.lr_scheduler.LambdaLR(want, LRSchedule("cosine", warmup_steps=100, total_steps=300,
                                                                    min_lr_ratio=0.02, step_size=1000, gamma=0.5))
    opt, sched = built["optimizer"], built["lr_scheduler"]["scheduler"]
    assert type(opt) is torch.optim.AdamW and built["lr_scheduler"]["interval"] == "step"
    assert opt.state_dict()["param_groups"] == want.state_dict()["param_groups"]
    assert [len(g["params"]) for g in opt.param_groups] == [len(g["params"]) for g in want.param_groups]
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]
    got_lrs, want_lrs = [], []
    for _ in range(400):  # past total_steps: the cosine floor is held
        got_lrs.append(opt.param_groups[0]["lr"])
        want_lrs.append(want.param_groups[0]["lr"])
        opt.step()  # no gradients: nothing moves; keeps the optimiser-then-schedule order
        want.step()
        sched.step()
        want_sched.step()
    assert got_lrs == want_lrs and sched.state_dict() == want_sched.state_dict()
    assert got_lrs[0] == pytest.approx(1e-5) and got_lrs[99] == pytest.approx(1e-3)
    assert got_lrs[-1] == pytest.approx(2e-5)


def test_bad_optimizer_target_is_a_config_error(tmp_path: Path) -> None:
    from deeptalk_ser.runs.train import check_config

    with pytest.raises(ConfigError, match="training.optimizer._target_"):
        check_config(_compose(tmp_path, "training.optimizer._target_=torch.optim.Lamb"))
    with pytest.raises(ConfigError, match="training.optimizer: .*momentum"):
        check_config(_compose(tmp_path, "+training.optimizer.momentum=0.9"))  # Adam has none
    sgd = check_config(_compose(tmp_path, "training.optimizer._target_=torch.optim.SGD",
                                "+training.optimizer.momentum=0.9", "+training.optimizer.nesterov=true"))[0]
    assert sgd.func is torch.optim.SGD and sgd.keywords["nesterov"] is True


def _global_norm(grads: list[torch.Tensor]) -> float:
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


class _NormRecordingSGD(torch.optim.SGD):
    """SGD that records the global L2 norm of the gradients it is about to apply."""

    norms: list[float] = []

    def step(self, closure=None):
        loss = closure() if closure is not None else None  # Lightning's closure: forward, backward, clipping
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        type(self).norms.append(_global_norm(grads))
        super().step()
        return loss


def test_trainer_gradient_clip_val_clips_the_global_norm(tmp_path: Path) -> None:
    """``trainer.gradient_clip_val`` (conf/trainer/default.yaml: 3.0, norm) is what clips: the
    module no longer overrides Lightning's clipping hook, and the gradients the optimiser applies
    have a global L2 norm of 3 when the raw gradients are far larger."""
    import functools as ft

    import lightning as L
    from hydra.utils import instantiate

    from deeptalk_ser.runs.train import build_module
    from deeptalk_ser.training.module import SpeakerEncoderModule

    cfg = _compose(tmp_path)
    assert (cfg.trainer.gradient_clip_val, cfg.trainer.gradient_clip_algorithm) == (3.0, "norm")
    assert SpeakerEncoderModule.configure_gradient_clipping is L.LightningModule.configure_gradient_clipping
    _NormRecordingSGD.norms = []
    module = build_module(cfg, ft.partial(_NormRecordingSGD, lr=0.0), None, n_speakers=3)
    loss_of = module.compute_loss
    module.compute_loss = lambda emb, labels: 1e4 * loss_of(emb, labels)  # gradients far above the clip

    raw: list[float] = []

    class Raw(L.Callback):  # before Lightning clips
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            raw.append(_global_norm(grads))

    trainer = instantiate(cfg.trainer, accelerator="cpu", max_steps=1, logger=False, callbacks=[Raw()],
                          enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                          limit_val_batches=0, _convert_="all")
    torch.manual_seed(0)
    batch = torch.utils.data.TensorDataset(torch.randn(6, 40, 160), torch.arange(3).repeat_interleave(2))
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batch, batch_size=6))
    assert raw and raw[0] > 30.0
    assert _NormRecordingSGD.norms == [pytest.approx(3.0, rel=1e-4)]
    path = tmp_path / "step1.ckpt"  # hyper-parameters stay plain values: no optimiser callable pickled
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert set(ckpt["hyper_parameters"]) == {"seed", "val_trial_seed", "n_speakers", "deepvox"}


def _experiment(tmp: Path, body: str) -> Path:
    """A config folder with ``experiment/mine.yaml`` (a user's experiment file)."""
    (tmp / "extra" / "experiment").mkdir(parents=True, exist_ok=True)
    (tmp / "extra" / "experiment" / "mine.yaml").write_text("# @package _global_\n" + body)
    return tmp / "extra"


def test_init_checkpoint_is_one_key_wherever_it_is_set(tmp_path: Path) -> None:
    """``training.init_checkpoint`` from the command line and from an experiment file compose to
    the same config and start from the same weights; ``encoder.checkpoint`` is refused the same
    way from either place (it is what extract.py / evaluate.py load)."""
    from deeptalk_ser.embedding.encoders.deeptalk import build_net
    from deeptalk_ser.runs.train import build_module, check_config

    weights = tmp_path / "start.pt"
    torch.save(build_net(7).state_dict(), weights)
    line = _compose(tmp_path, f"training.init_checkpoint={weights}")
    extra = _experiment(tmp_path, f"training:\n  init_checkpoint: {weights}\n")
    filed = _compose(tmp_path, "experiment=mine", config_dir=extra)
    assert line.training.init_checkpoint == filed.training.init_checkpoint == str(weights)
    assert line.encoder.checkpoint == filed.encoder.checkpoint == str(weights)  # follows it
    want = build_net(7).state_dict()
    for cfg in (line, filed):
        optimizer, scheduler = check_config(cfg)
        net = build_module(cfg, optimizer, scheduler, n_speakers=3).net.state_dict()
        assert all(torch.equal(net[k], want[k]) for k in want)
    fresh = _compose(tmp_path)
    assert fresh.training.init_checkpoint is None and fresh.encoder.checkpoint is None  # not the shipped encoder
    check_config(fresh)

    on_line = _compose(tmp_path, f"encoder.checkpoint={weights}")
    in_file = _compose(tmp_path, "experiment=mine", config_dir=_experiment(tmp_path, f"encoder:\n  checkpoint: {weights}\n"))
    refused = [on_line, in_file]
    for cfg in refused:
        with pytest.raises(ConfigError, match="encoder.checkpoint: train.py starts from training.init_checkpoint"):
            check_config(cfg)


# -- augmentation ------------------------------------------------------------------------------


def test_noise_is_added_at_the_drawn_snr_and_is_coloured() -> None:
    rng = np.random.default_rng(0)
    wav = rng.standard_normal(8000).astype(np.float32) * 0.1
    for snr in (0.0, 10.0, 20.0):
        noisy = add_noise(wav, coloured_noise(8000, "pink", rng), snr)
        got = 10 * np.log10(np.mean(wav.astype(np.float64) ** 2) / np.mean((noisy - wav).astype(np.float64) ** 2))
        assert got == pytest.approx(snr, abs=0.01)
    brown = np.abs(np.fft.rfft(coloured_noise(8000, "brown", rng)))
    white = np.abs(np.fft.rfft(coloured_noise(8000, "white", rng)))
    low, high = slice(1, 200), slice(3000, 4000)
    assert brown[low].mean() / brown[high].mean() > 10 * white[low].mean() / white[high].mean()


def test_speed_perturbation_changes_length_and_pitch() -> None:
    t = np.arange(8000) / 8000
    wav = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    fast = speed_perturb(wav, 1.1)
    assert len(fast) == pytest.approx(8000 / 1.1, abs=2)
    peak = np.argmax(np.abs(np.fft.rfft(fast))) * 8000 / len(fast)
    assert peak == pytest.approx(220, abs=3)
    assert speed_perturb(wav, 1.0) is wav


def test_noise_dir_segments_are_resampled_and_bad_files_named(tmp_path: Path) -> None:
    (tmp_path / "noise").mkdir()
    sf.write(tmp_path / "noise" / "hum.wav", np.sin(np.arange(16000) * 0.1).astype(np.float32), 16000)
    aug = CropAugment(noise_prob=1.0, noise_dir=str(tmp_path / "noise"))
    seg = read_noise_segment(tmp_path / "noise" / "hum.wav", 4000, 8000, np.random.default_rng(0))
    assert seg.shape == (4000,)
    out = aug.perturb(np.ones(1000, np.float32), 1.0, np.random.default_rng(1))
    assert out.shape == (1000,) and not np.allclose(out, 1.0)
    (tmp_path / "noise" / "broken.wav").write_bytes(b"RIFFjunk")
    with pytest.raises(DataError, match="broken.wav"):
        read_noise_segment(tmp_path / "noise" / "broken.wav", 100, 8000, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="training.augment.noise_dir"):
        CropAugment(noise_prob=1.0, noise_dir=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="training.augment.noise_prob"):
        CropAugment(noise_prob=1.5)


def test_augmented_crops_are_deterministic_and_differ_from_clean(tmp_path: Path, speech_signal) -> None:
    from deeptalk_ser.data.audio.frontend import AudioFrontend
    from deeptalk_ser.data.manifest import Utterance
    from deeptalk_ser.training.crop_store import CropStore, prepare_store

    utts = []
    for i, seconds in enumerate((3.0, 0.6)):  # one long, one shorter than the crop (tiled)
        p = tmp_path / f"u{i}.wav"
        sf.write(p, speech_signal(seconds, 8000, f0=110.0 + 20 * i), 8000)
        utts.append(Utterance(id=f"u{i}", path=str(p), speaker=f"s{i}"))
    report = prepare_store(utts, AudioFrontend(sample_rate=8000), tmp_path / "store")
    store = CropStore(report.path)
    aug = CropAugment(noise_prob=1.0, speed_prob=1.0, speeds=(0.9, 1.1))
    for i in range(len(store)):
        a = store.crop(i, 100, np.random.default_rng(7), aug)
        b = store.crop(i, 100, np.random.default_rng(7), aug)
        clean = store.crop(i, 100, np.random.default_rng(7))
        assert a.shape == clean.shape == (100, 160) and a.dtype == np.float32
        assert np.array_equal(a, b)
        assert not np.allclose(a, clean)
    inactive = store.crop(0, 100, np.random.default_rng(7), CropAugment())  # all probabilities 0
    assert np.array_equal(inactive, store.crop(0, 100, np.random.default_rng(7)))


# -- model card, selection, export -------------------------------------------------------------


def _summary(run: Path, loss: str, eers: list[float], ckpt: Path | None) -> dict:
    return {"run_dir": str(run), "loss": loss, "global_step": 10 * len(eers), "train_seconds": 75.0,
            "best_val_eer": min(e for e in eers if math.isfinite(e)) if any(map(math.isfinite, eers)) else None,
            "best_model_path": str(ckpt) if ckpt else None, "train_speakers": 5, "train_utterances": 20,
            "val_utterances": 12, "data": {"name": "toy", "train_split": "train", "val_speakers": 3, "hours": 0.1},
            "recipe": {"loss": {"margin": 0.2}, "training": {"speakers_per_batch": 3, "lr": 1e-3}, "seed": 0},
            "val_history": [{"step": 10 * (i + 1), "eer": e, "min_dcf_p0.01": 1.0, "train_seconds": 10.0 * i}
                            for i, e in enumerate(eers)]}


def test_model_card_lists_curve_and_comparison(tmp_path: Path) -> None:
    a = _summary(tmp_path / "a", "aam", [0.4, float("nan"), 0.2, 0.3], None)
    b = _summary(tmp_path / "b", "ge2e", [0.35], None)
    assert best_row(a)["step"] == 30
    assert select_best([a, b]) is a
    card = render_model_card(a, "x.pt", [a, b])
    assert "| 30 | 0:00:20 | 0.2000 | 1.0000 |" in card and "| 20 | 0:00:10 | n/a |" in card
    assert "| `b` | ge2e | 10 | 0:01:15 | 0.3500 (10) |" in card
    with pytest.raises(DataError, match="best checkpoint"):
        export_with_card(a, tmp_path / "x.pt")
    with pytest.raises(DataError, match="no run has a finite"):
        select_best([_summary(tmp_path / "c", "triplet", [float("nan")], None)])
    assert card_path(tmp_path / "encoder.pt").name == "MODEL_CARD.md"
    assert card_path(tmp_path / "deeptalk.pt").name == "deeptalk.MODEL_CARD.md"


def test_model_card_optimiser_row_reads_this_and_earlier_recipes() -> None:
    """The card states lr, optimiser and clipping from the ``_partial_`` node and the trainer's
    clip (this code) and from ``training.lr`` / ``training.grad_clip`` (runs before it)."""
    from deeptalk_ser.training.model_card import optimiser_row

    now = {"training": {"optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3,
                                      "weight_decay": 1e-4}},
           "gradient_clip": {"val": 3.0, "algorithm": "norm"}}
    before = {"training": {"lr": 1e-3, "grad_clip": 3.0, "optimizer": {"name": "adamw", "weight_decay": 1e-4}}}
    assert optimiser_row(now) == ('lr 0.001, `{"_target_": "torch.optim.AdamW", "weight_decay": 0.0001}`, '
                                  'gradient-norm clip 3.0')
    assert optimiser_row(before) == 'lr 0.001, `{"name": "adamw", "weight_decay": 0.0001}`, gradient-norm clip 3.0'


@pytest.mark.e2e
def test_train_with_the_toolkit_recipe_exports_best_encoder_and_card(tmp_path: Path) -> None:
    from e2e_utils import read_json, run_script, speech_kaldi_tree
    from test_e2e_train import TINY

    corpus = speech_kaldi_tree(tmp_path / "kaldi" / "speechocean762")
    run = tmp_path / "run"
    run_script("train.py", *TINY, "experiment=speaker_recipe", f"data.root={corpus}", "trainer.max_steps=4",
               "training.scheduler.warmup_steps=1", "loss.margin_warmup_steps=2", f"hydra.run.dir={run}", tmp=tmp_path)
    summary = read_json(run / "train_summary.json")
    assert summary["loss"] == "aam" and summary["global_step"] == 4
    assert [r["step"] for r in summary["val_history"]] == [2, 4]
    assert summary["train_seconds"] > 0 and summary["recipe"]["training"]["augment"]["noise_prob"] == 0.5
    exported = torch.load(run / "encoder.pt", map_location="cpu", weights_only=True)
    assert not any(k.startswith("loss_fn") or "weight" == k for k in exported["state_dict"])
    assert exported["meta"]["loss"] == "aam" and exported["meta"]["best_model_path"] == summary["best_model_path"]
    ckpt = torch.load(summary["best_model_path"], map_location="cpu", weights_only=False)
    assert ckpt["state_dict"]["loss_fn.weight"].shape == (5, 256)  # the head: trained, kept for resume only
    assert torch.equal(exported["state_dict"]["fCNN.0.weight"], ckpt["state_dict"]["net.fCNN.0.weight"])
    card = (run / "MODEL_CARD.md").read_text()
    assert "experiment=speaker_recipe" in card and "## Validation curve" in card
    assert ('| optimiser | lr 0.001, `{"_target_": "torch.optim.AdamW", "weight_decay": 0.0001}`, '
            'gradient-norm clip 3.0 |') in card
    assert summary["recipe"]["gradient_clip"] == {"val": 3.0, "algorithm": "norm"}
    lr = ckpt["lr_schedulers"][0]
    assert lr["_last_lr"][0] < 1e-3  # cosine decayed by the last step


def test_export_cli_picks_the_best_run_and_writes_its_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import sys

    from deeptalk_ser.embedding.encoders.deeptalk import build_net
    from deeptalk_ser.training import export

    runs = []
    for name, eers in (("worse", [0.4, 0.3]), ("better", [0.25, 0.2])):
        run = tmp_path / name
        (run / "checkpoints").mkdir(parents=True)
        ckpt = run / "checkpoints" / "best.ckpt"
        torch.save({"state_dict": {f"net.{k}": v for k, v in build_net(len(runs)).state_dict().items()}}, ckpt)
        (run / "train_summary.json").write_text(json.dumps(_summary(run, name, eers, ckpt)))
        runs.append(str(run))
    out = tmp_path / "ship" / "enc.pt"
    out.parent.mkdir()
    monkeypatch.setattr(sys, "argv", ["export", "--runs", *runs, "--", str(out)])
    export.main()
    exported = torch.load(out, map_location="cpu", weights_only=True)
    assert exported["meta"]["loss"] == "better" and len(exported["meta"]["compared"]) == 2
    assert torch.equal(exported["state_dict"]["fCNN.0.weight"], build_net(1).state_dict()["fCNN.0.weight"])
    assert "| `worse` |" in (tmp_path / "ship" / "enc.MODEL_CARD.md").read_text()
