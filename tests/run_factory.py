"""Run directories written by the real logger, for the tests of the readers and the command."""

from __future__ import annotations

from pathlib import Path

import expmate.config
from expmate import ExperimentLogger, parse_config

VAL_LOSS = (0.9, 0.6, 0.45, 0.5)  # the best is epoch 2; the last, epoch 3, is worse
VAL_ACC = (0.5, 0.625, 0.75, 0.7)


def make_run(
    run_dir: Path,
    *,
    lr: float = 0.01,
    width: int = 64,
    epochs: int = 4,
    steps_per_epoch: int = 5,
    fail: bool = False,
    checkpoints: bool = False,
) -> Path:
    """A small training run: config, stages, timers, a warning, train/val metrics per epoch.

    ``train/loss`` is logged every step (``1 / (step + 1) + lr``), ``val/loss`` and
    ``val/accuracy`` once per epoch at the epoch's last step (values :data:`VAL_LOSS`,
    :data:`VAL_ACC`). With ``fail`` the run raises ValueError inside the last epoch's
    validation, in a ``with`` block, so it is recorded as failed. With ``checkpoints`` each
    epoch ends with an event carrying a ``checkpoint`` field, as a checkpoint manager logs.
    """
    active = expmate.config._active  # left as it was: the config is this run's only
    parse_config(
        [f"training.lr={lr}", f"model.width={width}"],
        defaults={
            "run_id": run_dir.name,
            "training": {"lr": 0.1, "epochs": epochs},
            "model": {"width": 32},
        },
    )
    try:
        with ExperimentLogger(run_dir=run_dir, console_output=False) as logger:
            logger.info(f"Starting experiment: {run_dir.name}")
            for epoch in range(epochs):
                with logger.stage("epoch", epoch=epoch):
                    with logger.stage("train"):
                        for i in range(steps_per_epoch):
                            step = epoch * steps_per_epoch + i
                            with logger.timer("forward", log_result=True):
                                pass
                            logger.log_metric(step, "train", "loss", 1.0 / (step + 1) + lr)
                    with logger.stage("validation"):
                        if fail and epoch == epochs - 1:
                            raise ValueError("NaN detected in loss")
                        last = (epoch + 1) * steps_per_epoch - 1
                        logger.log_metric(last, "val", "loss", VAL_LOSS[epoch % 4])
                        logger.log_metric(last, "val", "accuracy", VAL_ACC[epoch % 4])
                    if epoch == 1:
                        logger.warning("LR might be too high")
                    if checkpoints:  # the events of expmate.torch.CheckpointManager
                        path = f"checkpoints/epoch_{epoch}.pt"
                        message = f"Checkpoint saved: step {last} -> {path}"
                        logger.info(message, checkpoint="saved", step=last, file=path)
    except ValueError:
        pass
    finally:
        expmate.config._active = active
    return run_dir
