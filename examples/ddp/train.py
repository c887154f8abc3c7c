"""Train a small classifier with DistributedDataParallel and log it with expmate.

Synthetic data (a random linear "teacher" labels Gaussian inputs), a two-layer MLP, SGD. Runs
under torchrun (one process per GPU, or CPU processes with gloo) and as a plain single process:

    torchrun --nproc_per_node=2 examples/ddp/train.py training.epochs=5
    torchrun --nproc_per_node=2 examples/ddp/train.py device=cpu   # CPU processes, gloo
    python examples/ddp/train.py training.epochs=5 run_dir=runs/single

Every rank logs its own stages and timers to its own files; metrics are reduced across ranks so
``metrics.csv`` and ``best.json`` (rank 0) hold global values: the training loss as the sum of
per-rank ``loss * count`` over the sum of counts, accuracy as a mean weighted by sample count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from expmate import Config, ExperimentLogger, parse_config
from expmate.torch import mp

DEFAULTS: dict[str, Any] = {
    "run_dir": "",
    "device": "auto",  # auto: CUDA (NCCL) when available, else CPU (gloo); or cpu / cuda
    "seed": 0,
    "data": {"train_size": 4096, "val_size": 1024, "features": 16, "classes": 4},
    "training": {"epochs": 3, "batch_size": 64, "lr": 0.1, "log_every_batches": 20},
}


def make_data(config: Config) -> tuple[TensorDataset, TensorDataset]:
    """The same synthetic train/val sets on every rank (one seeded generator)."""
    gen = torch.Generator().manual_seed(config.seed)
    d = config.data
    teacher = torch.randn(d.features, d.classes, generator=gen)

    def split(size: int) -> TensorDataset:
        x = torch.randn(size, d.features, generator=gen)
        return TensorDataset(x, (x @ teacher).argmax(dim=1))

    return split(d.train_size), split(d.val_size)


def train_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    logger: ExperimentLogger,
    epoch: int,
    every: int,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One pass over this rank's shard: (sum of loss * batch size, correct, sample count).

    The sums stay tensors on the device: no host sync per batch.
    """
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    count = 0
    for batch, (x, y) in enumerate(loader):
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(dim=1) == y).sum()
        count += len(y)
        with logger.log_every(every=every, key="batch"):
            logger.debug(f"epoch {epoch} batch {batch + 1}/{len(loader)}")
    return loss_sum, correct, count


@torch.no_grad()
def validate(
    model: nn.Module, data: TensorDataset, device: torch.device, rank: int, world: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Evaluate this rank's exact share of the validation set (every ``world``-th sample)."""
    model.eval()
    x, y = data.tensors[0][rank::world].to(device), data.tensors[1][rank::world].to(device)
    logits = model(x)
    loss_sum = F.cross_entropy(logits, y, reduction="sum")
    return loss_sum, (logits.argmax(dim=1) == y).sum(), len(y)


def log_epoch(
    logger: ExperimentLogger, epoch: int, split: str, stats: tuple[Any, Any, int]
) -> None:
    """Log one split's metrics, reduced across ranks (tensors: copied to the host at the sync)."""
    loss_sum, correct, count = stats
    weight = max(count, 1)
    logger.log_metric(epoch, split, "loss", loss_sum / weight, reduce="mean", weight=count)
    logger.log_metric(epoch, split, "accuracy", correct / weight, reduce="mean", weight=count)
    logger.log_metric(epoch, split, "loss_sum", loss_sum, track_best=False, reduce="sum")
    logger.log_metric(epoch, split, "samples", count, track_best=False, reduce="sum")


def build(config: Config, device: torch.device, world: int) -> tuple[nn.Module, nn.Module]:
    """The model, and what to call for training (wrapped in DDP when there are several ranks)."""
    torch.manual_seed(config.seed)  # the same initial weights everywhere
    d = config.data
    model = nn.Sequential(nn.Linear(d.features, 64), nn.ReLU(), nn.Linear(64, d.classes))
    model.to(device)
    if world == 1:
        return model, model
    ids = [device.index] if device.type == "cuda" else None
    return model, DistributedDataParallel(model, device_ids=ids)


@dataclass
class Run:
    """Everything one training run needs, built once in main()."""

    config: Config
    logger: ExperimentLogger
    model: nn.Module
    trained: nn.Module
    loader: DataLoader
    optimizer: torch.optim.Optimizer
    val_set: TensorDataset
    device: torch.device
    rank: int
    world: int


def run_epoch(run: Run, epoch: int) -> None:
    """Train, validate and log one epoch, in the guide's stage/timer layout."""
    logger, epochs = run.logger, run.config.training.epochs
    with logger.stage("epoch", epoch=epoch):
        with (
            logger.stage("train"),
            mp.timer_across_ranks(logger, "train_epoch_all_ranks"),
            logger.timer("train_epoch"),
        ):
            train_stats = train_epoch(
                run.trained,
                run.loader,
                run.optimizer,
                device=run.device,
                logger=logger,
                epoch=epoch,
                every=run.config.training.log_every_batches,
            )
        log_epoch(logger, epoch, "train", train_stats)
        with logger.stage("validation"), logger.timer("val_epoch"):
            val_stats = validate(run.model, run.val_set, run.device, run.rank, run.world)
        log_epoch(logger, epoch, "val", val_stats)
        logger.sync()  # reduce this epoch now, so the summary below sees it
        best = logger.get_best_metric("loss", split="val")
        with logger.log_every(every=1, key="epoch"):
            logger.info(
                f"Epoch {epoch + 1}/{epochs}: best val_loss so far "
                f"{best['value']:.4f} (epoch {best['step']})"
            )


def pick_device(config: Config) -> torch.device:
    """The device this rank trains on, from ``config.device`` and ``LOCAL_RANK``."""
    use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    return torch.device("cuda", mp.get_local_rank()) if use_cuda else torch.device("cpu")


def setup(config: Config, rank: int, world: int, device: torch.device) -> Run:
    """Logger, data, model and optimizer of this rank."""
    logger = ExperimentLogger(
        run_dir=config.run_dir or f"runs/{config.run_id}", run_id=config.run_id
    )
    logger.info(f"Starting experiment: {config.run_id} (world_size={world}, device={device})")
    train_set, val_set = make_data(config)
    sampler = DistributedSampler(train_set, seed=config.seed) if world > 1 else None
    loader = DataLoader(
        train_set, batch_size=config.training.batch_size, sampler=sampler, shuffle=sampler is None
    )
    model, trained = build(config, device, world)
    optimizer = torch.optim.SGD(trained.parameters(), lr=config.training.lr)
    return Run(config, logger, model, trained, loader, optimizer, val_set, device, rank, world)


def main() -> None:
    config = parse_config(defaults=DEFAULTS)
    device = pick_device(config)
    rank, _, world = mp.setup_ddp(backend="nccl" if device.type == "cuda" else "gloo")
    run = setup(config, rank, world, device)
    for epoch in range(config.training.epochs):
        if isinstance(run.loader.sampler, DistributedSampler):
            run.loader.sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on all ranks
        run_epoch(run, epoch)
    logger = run.logger
    best_loss = logger.get_best_metric("loss", split="val")
    best_acc = logger.get_best_metric("accuracy", split="val")
    logger.info(f"Best validation loss: {best_loss['value']:.4f} at epoch {best_loss['step']}")
    logger.info(f"Best validation accuracy: {best_acc['value']:.4f} at epoch {best_acc['step']}")
    logger.info(f"Logs saved to: {logger.run_dir}")
    logger.close()
    mp.cleanup_ddp()


if __name__ == "__main__":
    main()
