"""Use SAMT in a plain PyTorch training loop: no Hydra, no runner.

Run: python scripts/samt_in_your_loop.py   (scikit-learn's digits; about 10 s on one idle CPU core)
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import nn

from samt.optim import SAMT, SAMTModelError


def main() -> None:
    torch.set_num_threads(1)  # models this small run fastest on one thread
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    y = torch.tensor(digits.target)
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]

    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    cnn = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
    for name, model in (("MLP", mlp), ("CNN", cnn)):
        # One block per Linear/Conv layer; element-wise trainable steps; exact meta-gradients.
        opt = SAMT(model, nn.functional.cross_entropy, step_type="element", eta0=0.1)
        for _epoch in range(10):
            perm = torch.randperm(len(x_train))
            for i in range(0, len(perm), 64):
                idx = perm[i:i + 64]
                opt.step(x_train[idx], y_train[idx])  # returns the loss before the update
        with torch.no_grad():
            acc = (model(x_test).argmax(1) == y_test).float().mean().item()
        stats = opt.epoch_stats()  # per-block means since the last call
        print(f"{name}: test accuracy {100 * acc:.1f} %, "
              f"mean step of block 0: {stats['b0_eta_mean']:.3f}")

    # Models SAMT cannot split get one clear error:
    try:
        SAMT(nn.LSTM(8, 8), nn.functional.mse_loss)
    except SAMTModelError as exc:
        print(f"SAMTModelError: {exc}")


if __name__ == "__main__":
    main()
