"""The training loop on the tiny model and 64x64 synthetic images: learning, files, checkpoints, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dacovid_export.core.errors import UserInputError
from dacovid_export.data.synthetic import make_synthetic_dataset
from dacovid_export.model import load_checkpoint, read_checkpoint
from dacovid_export.train import evaluate_checkpoint, heldout_files, train_model
from dacovid_export.train.dataset import ImageDataset, make_loader
from dacovid_export.train.evaluate import predict
from tests.helpers.logs import said_lines


@pytest.fixture(scope="module")
def three_epoch_run(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory, tiny_train_config):
    run = tmp_path_factory.mktemp("run3")
    with said_lines("train") as messages:
        result = train_model(synthetic_dir, run, tiny_train_config(epochs=3))
    return result, messages


def test_training_loss_goes_down_and_run_folder_is_complete(three_epoch_run, tiny_classes: tuple[str, ...]) -> None:
    result, messages = three_epoch_run
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 3
    assert losses[-1] < losses[0]
    for name in ("best.pt", "last.pt", "metrics.json", "split.json", "confusion_matrix.png"):
        assert (result.run_dir / name).is_file(), name
    assert (result.run_dir / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads(result.metrics_file.read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    for h in metrics["history"]:
        assert set(h["val"]["per_class"]) == set(tiny_classes)
        assert len(h["val"]["confusion_matrix"]) == 3 and h["seconds"] > 0
    # best: highest validation accuracy, ties broken by the lower validation loss
    best = max(metrics["history"], key=lambda h: (h["val_accuracy"], -h["val_loss"]))
    assert metrics["best_epoch"] == best["epoch"] == result.best_epoch
    assert sum(1 for m in messages if m.startswith("epoch ")) == 3
    assert any("starts from scratch" in m for m in messages)


def test_best_checkpoint_round_trip_gives_the_recorded_predictions(
    three_epoch_run, tiny_classes: tuple[str, ...], tiny_model_kwargs: dict
) -> None:
    result, _ = three_epoch_run
    model, meta = load_checkpoint(result.best_checkpoint)
    assert meta.class_names == tiny_classes
    assert meta.preprocessing.image_size == 64
    assert meta.model_config.to_dict() == {"num_classes": 3, **tiny_model_kwargs}
    assert meta.epoch == result.best_epoch
    assert meta.training["config"]["lr"] == 1e-3
    assert meta.training["split_sha256"] and meta.training["layout"] == "folders"
    assert "extra_state" not in read_checkpoint(result.best_checkpoint)
    recorded = result.history[result.best_epoch - 1]
    # the loaded weights reproduce the validation loss measured inside the training run (logit level)
    held = heldout_files(result.best_checkpoint)
    items = [(p, tiny_classes.index(name)) for name, paths in held.items() for p in paths]
    loader = make_loader(ImageDataset(items, meta.preprocessing, train=False), batch_size=4, workers=0)
    targets, preds, loss_sum = predict(model, loader, device=torch.device("cpu"))
    assert loss_sum / len(targets) == pytest.approx(recorded["val_loss"], rel=1e-4, abs=1e-5)
    report = evaluate_checkpoint(result.best_checkpoint, device="cpu")
    assert [list(r) for r in report.confusion] == recorded["val"]["confusion_matrix"]
    assert report.accuracy == pytest.approx(recorded["val_accuracy"])


def test_resume_continues_at_the_next_epoch_exactly_as_an_uninterrupted_run(
    synthetic_dir: Path, tmp_path: Path, tiny_train_config
) -> None:
    straight = train_model(synthetic_dir, tmp_path / "straight", tiny_train_config(epochs=2))
    first = train_model(synthetic_dir, tmp_path / "resumed", tiny_train_config(epochs=1))
    assert first.epochs_completed == 1
    with said_lines("train") as messages:
        resumed = train_model(synthetic_dir, tmp_path / "resumed", tiny_train_config(epochs=2, resume=True))
    assert any("resuming" in m and "after epoch 1" in m for m in messages)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert [m for m in messages if m.startswith("epoch ")][0].startswith("epoch 2/2")
    a = read_checkpoint(straight.last_checkpoint)
    b = read_checkpoint(resumed.last_checkpoint)
    assert a["epoch"] == b["epoch"] == 2
    # Adam's step counters carried over: 18 training images, batch 4 -> 5 steps per epoch
    steps = [s["step"].item() for s in b["extra_state"]["optimizer"]["state"].values()]
    assert steps and all(s == 10 for s in steps)
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, msg=lambda m, key=key: f"{key}: {m}")
    assert resumed.history[1]["train_loss"] == pytest.approx(straight.history[1]["train_loss"], rel=1e-5)


def test_resume_refuses_changed_model_or_data_options_and_says_which(three_epoch_run, tiny_train_config) -> None:
    result, _ = three_epoch_run
    data_dir = Path(read_checkpoint(result.last_checkpoint)["training"]["data_dir"])
    with pytest.raises(UserInputError, match=r"image_size \(run: 64, now: 96\).*seed \(run: 0, now: 1\)"):
        train_model(data_dir, result.run_dir, tiny_train_config(epochs=5, resume=True, image_size=96, seed=1))
    with pytest.raises(UserInputError, match="reduction_kernel_size"):
        train_model(data_dir, result.run_dir, tiny_train_config(epochs=5, resume=True, reduction_kernel_size=3))
    with pytest.raises(UserInputError, match="already completed 3 epoch"):
        train_model(data_dir, result.run_dir, tiny_train_config(epochs=3, resume=True))


def test_existing_run_is_not_overwritten_without_resume(three_epoch_run, synthetic_dir: Path, tiny_train_config) -> None:
    result, _ = three_epoch_run
    with pytest.raises(UserInputError, match="--resume"):
        train_model(synthetic_dir, result.run_dir, tiny_train_config())


def test_kaggle_layout_trains_on_train_and_validates_on_test_with_class_weights(tmp_path: Path, tiny_train_config) -> None:
    root = make_synthetic_dataset(tmp_path / "kaggle", per_class=4, size=64, seed=2, layout="kaggle", test_per_class=2)
    for p in sorted((root / "train" / "covid").iterdir())[2:]:
        p.unlink()  # train counts 4 / 4 / 2
    result = train_model(root, tmp_path / "run", tiny_train_config(epochs=1, class_weights=True))
    split = json.loads(result.split_file.read_text())
    assert split["layout"] == "kaggle"
    assert split["counts"]["train"] == {"Normal": 4, "Pneumonia": 4, "COVID-19": 2}
    assert split["counts"]["val"] == {"Normal": 2, "Pneumonia": 2, "COVID-19": 2}
    assert sum(result.best_report.support) == 6
    assert all(p.parent.parent.name == "test" for paths in heldout_files(result.run_dir).values() for p in paths)
    # "balanced" weights: n / (classes * count)
    weights = read_checkpoint(result.best_checkpoint)["training"]["class_weights"]
    assert weights == pytest.approx([10 / 12, 10 / 12, 10 / 6])
