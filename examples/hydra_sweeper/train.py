"""A small Hydra app: a PyTorch MLP fitted to a noisy sine on synthetic data.

Run once:            python examples/hydra_sweeper/train.py
Tune it (ugro_hpo):  python examples/hydra_sweeper/train.py -m
                     (conf/config.yaml selects the sweeper and its search space)
Early stopping:      ... -m hydra.sweeper.scheduler=asha

The only line that knows about ugro_hpo is `ugro_hpo.report(...)`, which does nothing when the
app is not run by the sweeper.
"""

from __future__ import annotations

import logging
import math

import hydra
import torch
from omegaconf import DictConfig

import ugro_hpo

log = logging.getLogger(__name__)


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=generator) * 2 * math.pi
    y = torch.sin(x) + 0.1 * torch.randn(n, 1, generator=generator)
    return x, y


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def train(cfg: DictConfig) -> float:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)
    x_train, y_train = make_data(cfg.data.train_size, cfg.seed)
    x_val, y_val = make_data(256, cfg.seed + 1)
    layers: list[torch.nn.Module] = []
    width = 1
    for _ in range(cfg.model.depth):
        layers += [torch.nn.Linear(width, cfg.model.hidden), torch.nn.Tanh()]
        width = cfg.model.hidden
    model = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    val_loss = float("inf")
    for epoch in range(cfg.epochs):
        for start in range(0, len(x_train), cfg.optim.batch_size):
            batch = slice(start, start + cfg.optim.batch_size)
            loss = torch.nn.functional.mse_loss(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            val_loss = torch.nn.functional.mse_loss(model(x_val), y_val).item()
        log.info("epoch %d: val_loss %.4f", epoch + 1, val_loss)
        ugro_hpo.report(epoch + 1, val_loss=val_loss)  # lets a scheduler stop a poor trial
    return val_loss


if __name__ == "__main__":
    train()
