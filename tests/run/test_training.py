"""The engine learns for real, phases chain, resumes are exact, and runs leave their files."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace

import pytest
import torch
from PIL import Image

from tlcli.run.checkpoint import load_checkpoint
from tlcli.core.config import AugmentConfig, DataConfig, FinetuneConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from tlcli.engine.loop import Observer
from tlcli.engine.optim import balanced_class_weights
from tlcli.core.errors import TlcliError
from tlcli.evaluation.evaluate import evaluate_checkpoint
from tlcli.run.folder import RunFolder
from tlcli.run.resume import resume
from tlcli.run.finetune import finetune

from tests.helpers import make_class_folder, train, working_in, write_image

pytestmark = pytest.mark.usefixtures("isolated")


def _config(arch="mlp", *, epochs=2, out="checkpoints/run", **run_overrides) -> TrainConfig:
    return TrainConfig(
        data=DataConfig("digits"),
        model=ModelConfig(arch=arch, weights="none"),
        run=RunConfig(epochs=epochs, out=out, workers=0, **run_overrides),
    )


def _without_timing(history):
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in history]


# Real learning on real handwritten digits; the thresholds are the issue's.
@pytest.mark.parametrize("arch,epochs,minimum", [("simple_cnn", 8, 0.95), ("mlp", 15, 0.93)])
def test_baselines_learn_the_digits(arch, epochs, minimum):
    result = train(_config(arch, epochs=epochs, out=f"checkpoints/{arch}"))
    history = result.history
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 3
    evaluation = evaluate_checkpoint(str(result.run_dir), split="test")
    assert evaluation.images == 179
    assert evaluation.metrics.accuracy >= minimum


def test_a_run_writes_its_files_and_points_latest_at_itself(tmp_path):
    result = train(_config(epochs=2, out=None))
    run_dir = result.run_dir
    assert run_dir.parent == tmp_path / "checkpoints" and run_dir.name.startswith("digits-mlp-")
    assert (tmp_path / "checkpoints" / "latest").resolve() == run_dir.resolve()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["arch"] == "mlp" and config["run"]["epochs"] == 2 and config["data"]["source"] == "digits"
    rows = list(csv.DictReader(open(run_dir / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(float(r["val_acc"]) > 0.5 for r in rows)
    with Image.open(run_dir / "curves.png") as image:
        assert image.format == "PNG" and image.width > 500
    log = (run_dir / "log.txt").read_text()
    assert "start phase 1" in log and "epoch 2" in log
    assert set(result.files) == {"best.pt", "last.pt", "config.json", "history.csv", "curves.png", "log.txt"}


def _small(tmp_path, **run) -> TrainConfig:
    """Thirty 16x16 images of three classes, augmented: what determinism must hold to, in a second."""
    folder = make_class_folder(tmp_path / "small", {"a": 10, "b": 10, "c": 10}, size=(16, 16))
    return TrainConfig(data=DataConfig(str(folder)), model=ModelConfig(arch="mlp", weights="none", input_size=16),
                       augment=AugmentConfig(rotate=15, zoom=0.1, hflip=True), run=RunConfig(workers=0, deterministic=True, **run))


def test_same_seed_and_deterministic_gives_identical_histories(tmp_path):
    first = train(_small(tmp_path, epochs=2, out="checkpoints/a"))
    second = train(_small(tmp_path, epochs=2, out="checkpoints/b"))
    assert _without_timing(first.history) == _without_timing(second.history)
    other_seed = train(_small(tmp_path, epochs=2, out="checkpoints/c", seed=7))
    assert _without_timing(other_seed.history) != _without_timing(first.history)


class _KillAfter(Observer):
    def __init__(self, epoch):
        self.epoch = epoch

    def epoch_end(self, row):
        if row["epoch"] == self.epoch:
            raise KeyboardInterrupt


def test_a_killed_run_resumed_ends_with_the_same_weights_as_an_uninterrupted_one(tmp_path):
    config = _small(tmp_path, epochs=4, out="checkpoints/whole")
    whole = train(config)
    killed = replace(config, run=replace(config.run, out="checkpoints/killed"))
    with pytest.raises(KeyboardInterrupt):
        train(killed, observer=_KillAfter(2))
    interrupted = load_checkpoint("checkpoints/killed/last.pt")
    assert interrupted["progress"]["epoch"] == 2
    resumed = resume("checkpoints/killed/last.pt")
    assert _without_timing(resumed.history) == _without_timing(whole.history)
    final = load_checkpoint("checkpoints/killed/last.pt")["state_dict"]
    reference = load_checkpoint("checkpoints/whole/last.pt")["state_dict"]
    assert all(torch.equal(final[k], reference[k]) for k in reference)


def test_resume_can_raise_epochs_and_refuses_a_finished_run():
    train(_config(epochs=2, out="checkpoints/r"))
    with pytest.raises(TlcliError, match="already completed"):
        resume("checkpoints/r/last.pt")
    longer = resume("checkpoints/r/last.pt", epochs=3)
    assert [row["epoch"] for row in longer.history] == [1, 2, 3]
    assert longer.history[-1]["lr"] > 0  # the cosine horizon follows the raised --epochs


@pytest.fixture(scope="module")
def resnet18_phase1(tmp_path_factory):
    """Phase 1 of a ResNet-18 whose "ImageNet" weights are a seeded file in the torch hub cache:
    two epochs on the digits at 32x32, backbone frozen. Returns the run and those weights."""
    from torchvision import models

    from tlcli.models.downloads import torch_hub_path

    base = tmp_path_factory.mktemp("resnet18")
    with working_in(base) as patch:
        patch.setenv("TORCH_HOME", str(base / "torch-home"))
        torch.manual_seed(0)
        pretrained = models.resnet18().state_dict()
        target = torch_hub_path(models.get_model_weights("resnet18").DEFAULT.url)
        target.parent.mkdir(parents=True)
        torch.save(pretrained, target)
        phase1 = train(TrainConfig(data=DataConfig("digits"), model=ModelConfig(arch="resnet18", input_size=32),
                                   run=RunConfig(epochs=2, out=str(base / "p1"), workers=0, monitor="val_acc")))
    return phase1, pretrained


def test_two_phase_transfer_learning(resnet18_phase1, tmp_path):
    phase1, pretrained = resnet18_phase1
    saved = load_checkpoint(phase1.run_dir / "best.pt")
    assert saved["freeze"]["policy"] == "backbone" and saved["model"]["weights"].startswith("torchvision:resnet18")
    state = saved["state_dict"]
    # Backbone weights and BatchNorm statistics are bit-identical to the pretrained file; the head moved.
    for key in ("conv1.weight", "layer2.0.conv1.weight", "bn1.running_mean", "bn1.running_var", "layer4.1.bn2.running_mean"):
        assert torch.equal(state[key], pretrained[key]), key
    assert state["fc.weight"].shape == (10, 512)
    assert phase1.history[-1]["val_acc"] > 0.3

    # The trial and the safety nets are tested on their own (test_transfer_quality, test_phase2_nets).
    phase2 = finetune(FinetuneConfig(source=str(phase1.run_dir), epochs=1, backbone_lr_mult=1.0, ema=False, wise_ft=False, out=str(tmp_path / "p2"),
                                     overrides=(("optim", "warmup_epochs", 0),)))  # the reports' rate from the first step
    best_val_acc = saved["history"][saved["progress"]["best_epoch"] - 1]["val_acc"]
    assert phase2.start["val_acc"] == pytest.approx(best_val_acc, abs=1e-9)
    final = load_checkpoint(phase2.run_dir / "last.pt")
    assert final["phase"] == 2 and final["parent"] == str(phase1.run_dir / "best.pt")
    assert final["freeze"]["policy"] == "none" and final["freeze"]["frozen"] == []
    # Phase 2 continues best.pt's history, which ends at phase 1's best epoch (the probe may converge by epoch 1).
    phase1_rows = len(saved["history"])
    assert [row["phase"] for row in final["history"]] == [1] * phase1_rows + [2]
    assert final["history"][-1]["epoch"] == phase1_rows + 1
    assert final["history"][-1]["lr"] == pytest.approx(1e-4)  # the reports' phase-2 rate
    assert not torch.equal(final["state_dict"]["layer2.0.conv1.weight"], pretrained["layer2.0.conv1.weight"])
    # BatchNorm keeps the statistics the head was fitted on (--bn-train lets them move).
    assert torch.equal(final["state_dict"]["bn1.running_mean"], pretrained["bn1.running_mean"])


def test_finetune_with_partial_unfreeze_and_backbone_lr_mult(resnet18_phase1, tmp_path):
    phase2 = finetune(FinetuneConfig(source=str(resnet18_phase1[0].run_dir), out=str(tmp_path / "p2"), unfreeze="blocks:3", epochs=1, lr=0.01, backbone_lr_mult=0.1,
                                     overrides=(("optim", "schedule", "none"),)))
    final = load_checkpoint(phase2.run_dir / "last.pt")
    assert final["freeze"]["policy"] == "blocks:3"
    assert not any(name.startswith("layer4.") for name in final["freeze"]["frozen"])
    assert "layer3.0.conv1.weight" in final["freeze"]["frozen"]
    groups = final["optimizer"]["param_groups"]
    assert {g["name"]: g["lr"] for g in groups} == pytest.approx({"head": 0.01, "backbone": 0.001})


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    config = _config(epochs=10, out="checkpoints/es", monitor="val_acc", patience=2)
    config = replace(config, optim=OptimConfig(lr=1e-12, schedule="none"))
    result = train(config)
    assert result.progress.stopped_early
    assert result.progress.epoch == 3 and result.progress.best_epoch == 1
    assert "stopped early" in (result.run_dir / "log.txt").read_text()


@pytest.mark.parametrize(
    "optim",
    [
        OptimConfig(optimizer="adamw", schedule="cosine", warmup_epochs=1, weight_decay=0.01),
        OptimConfig(optimizer="sgd", lr=0.05, nesterov=True, schedule="step", step_size=1, gamma=0.5),
        OptimConfig(optimizer="rmsprop", lr=1e-4, schedule="plateau"),
        OptimConfig(optimizer="adam", schedule="onecycle", label_smoothing=0.1, grad_clip=1.0, accumulate=2),
        OptimConfig(optimizer="adam", schedule="none", class_weights="balanced"),
    ],
    ids=["adamw-cosine-warmup", "sgd-step", "rmsprop-plateau", "adam-onecycle-accumulate", "balanced"],
)
def test_every_optimizer_and_schedule_learns_and_checkpoints_safely(optim):
    result = train(replace(_config(epochs=3, out="checkpoints/o"), optim=optim))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    checkpoint = torch.load(result.run_dir / "last.pt", weights_only=True)
    assert checkpoint["config"]["optim"]["optimizer"] == optim.optimizer
    resumed = resume(result.run_dir / "last.pt", epochs=4)
    assert len(resumed.history) == 4


def test_step_schedule_halves_the_rate_every_epoch():
    optim = OptimConfig(optimizer="sgd", lr=0.08, schedule="step", step_size=1, gamma=0.5)
    result = train(replace(_config(epochs=3, out="checkpoints/s"), optim=optim))
    assert [row["lr"] for row in result.history] == pytest.approx([0.08, 0.04, 0.02])


def test_balanced_class_weights_are_inverse_frequency():
    weights = balanced_class_weights([0, 0, 0, 1], 2)
    assert weights.tolist() == pytest.approx([4 / (2 * 3), 4 / (2 * 1)])


def test_bf16_and_channels_last_on_the_cpu():
    result = train(_config("simple_cnn", epochs=2, out="checkpoints/bf16", amp="bf16", channels_last=True))
    assert result.history[-1]["val_acc"] > 0.8


def test_fp16_on_the_cpu_and_a_missing_gpu_are_clear_errors():
    with pytest.raises(TlcliError, match="fp16"):
        train(_config(out="checkpoints/x", amp="fp16"))
    if not torch.cuda.is_available():
        with pytest.raises(TlcliError, match="CUDA is not available"):
            train(_config(out="checkpoints/y", device="cuda"))


def test_tensorboard_scalars_are_written():
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(_config(epochs=2, out="checkpoints/tb", tensorboard=True))
    events = EventAccumulator(str(result.run_dir / "tensorboard"))
    events.Reload()
    assert {"loss/train", "loss/val", "accuracy/train", "accuracy/val", "lr"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("loss/val")] == [1, 2]


def test_a_locked_run_folder_refuses_a_second_run_and_the_first_is_unharmed():
    first = train(_config(epochs=1, out="checkpoints/busy"))
    before = (first.run_dir / "last.pt").read_bytes()
    with RunFolder(first.run_dir).open(fresh=False):
        with pytest.raises(TlcliError, match="in use"):
            train(_config(epochs=1, out="checkpoints/busy", overwrite=True))
    assert (first.run_dir / "last.pt").read_bytes() == before


def test_a_finished_run_folder_is_not_overwritten_without_asking():
    train(_config(epochs=1, out="checkpoints/done"))
    with pytest.raises(TlcliError, match="already holds a run"):
        train(_config(epochs=1, out="checkpoints/done"))
    again = train(_config(epochs=1, out="checkpoints/done", overwrite=True))
    assert len(again.history) == 1


def test_an_unwritable_output_folder_is_a_clear_error():
    with pytest.raises(TlcliError, match="cannot write"):
        train(_config(epochs=1, out="/proc/tlcli-run"))


def test_truncated_images_met_during_training_are_skipped_with_a_warning(tmp_path):
    root = make_class_folder(tmp_path / "shapes", {"a": 12, "b": 12})
    jpeg = root / "a" / "broken.jpg"
    write_image(jpeg, size=(128, 128), fmt="JPEG", quality=95)
    jpeg.write_bytes(jpeg.read_bytes()[:2000])  # the header reads; the pixels do not
    (root / "b" / "empty.png").write_bytes(b"")  # caught when the folder is scanned

    class Collect(Observer):
        warnings: list[str] = []

        def warning(self, text):
            self.warnings.append(text)

    observer = Collect()
    config = TrainConfig(data=DataConfig(str(root), val_split=0.25, test_split=0.0), model=ModelConfig(arch="mlp", weights="none"),
                         run=RunConfig(epochs=2, out="checkpoints/t", workers=0))
    result = train(config, observer=observer)
    assert len(result.history) == 2 and not math.isnan(result.history[-1]["train_loss"])
    assert any("broken.jpg" in w and "decoded" in w for w in observer.warnings)
    assert any("empty.png" in w and "empty file" in w for w in observer.warnings)


def test_compiled_model_trains_and_saves_plain_weights():
    result = train(_config(epochs=1, out="checkpoints/compiled", compile=True))
    state = load_checkpoint(result.run_dir / "last.pt")["state_dict"]
    assert state and not any(key.startswith("_orig_mod.") for key in state)
    assert result.history[-1]["val_acc"] > 0.6


def test_resuming_onecycle_with_more_epochs_keeps_annealing():
    config = replace(_config(epochs=4, out="checkpoints/oc"), optim=OptimConfig(schedule="onecycle"))
    train(config)
    longer = resume("checkpoints/oc/last.pt", epochs=8)
    lrs = [row["lr"] for row in longer.history]
    assert all(later < earlier for earlier, later in zip(lrs[4:], lrs[5:]))  # no second warm-up


def test_overwrite_removes_the_old_runs_files_before_training():
    train(_config(epochs=1, out="checkpoints/ow"))

    class StopAtOnce(Observer):
        def batch_end(self, *args):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_config("simple_cnn", epochs=1, out="checkpoints/ow", overwrite=True), observer=StopAtOnce())
    from pathlib import Path

    assert not Path("checkpoints/ow/last.pt").exists() and not Path("checkpoints/ow/best.pt").exists()
    assert json.loads(Path("checkpoints/ow/config.json").read_text())["model"]["arch"] == "simple_cnn"


def test_resuming_from_best_pt_behind_last_pt_is_refused():
    config = replace(_config(epochs=3, out="checkpoints/bb", monitor="val_acc"), optim=OptimConfig(lr=1e-12, schedule="none"))
    train(config)  # nothing improves after epoch 1, so best.pt stays at epoch 1
    with pytest.raises(TlcliError, match="is behind"):
        resume("checkpoints/bb/best.pt", epochs=5)


def test_an_epoch_without_a_single_readable_image_is_an_error(tmp_path):
    root = tmp_path / "broken"
    for name in ("a", "b"):
        for i in range(4):
            path = write_image(root / name / f"{i}.jpg", size=(128, 128), fmt="JPEG", quality=95, seed=ord(name) * 10 + i)
            path.write_bytes(path.read_bytes()[:2000])
    config = TrainConfig(data=DataConfig(str(root), val_split=0, test_split=0, max_bad=100),
                         model=ModelConfig(arch="mlp", weights="none"), run=RunConfig(epochs=1, out="checkpoints/broken", workers=0))
    with pytest.raises(TlcliError, match="no training image of this epoch could be read"):
        train(config)
