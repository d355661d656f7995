"""The lecture's PyTorch code with only the import changed: a 2-layer MLP learns the handwritten digits.

    python examples/lecture_pytorch_style.py

The model, loss, optimizer, training loop (``loss.backward()``, ``optimizer.step()``,
``optimizer.zero_grad()``) and evaluation loop (``model.eval()``, ``with torch.no_grad():``, argmax
accuracy) are the PyTorch tutorial's, written against ``import fastnn as torch`` and
``from fastnn import nn``. What differs is the data: NumPy arrays from fastnn.datasets instead of
tensors from a DataLoader (``batches`` below stands in for torch.utils.data.DataLoader), and one
expression of the test loop (``.type(torch.float)``, a tensor method; the NumPy sum already counts).
Prints the loss as it trains and the test accuracy (about 95%; the weights are unseeded, as in the
tutorial); exits 1 below 90%.
"""

from __future__ import annotations

import sys

import numpy as np

import fastnn as torch  # was: import torch
from fastnn import nn  # was: from torch import nn
from fastnn.datasets import load_digits, train_test_split

learning_rate = 1e-1
batch_size = 64
epochs = 20


def batches(X, y, batch_size, shuffle, seed=0):
    """A stand-in for DataLoader(dataset, batch_size, shuffle): (X, y) mini-batches, reshuffled per pass."""
    rng = np.random.default_rng(seed)

    class Loader:
        dataset = X

        def __len__(self):
            return -(-len(X) // batch_size)

        def __iter__(self):
            order = rng.permutation(len(X)) if shuffle else np.arange(len(X))
            for start in range(0, len(X), batch_size):
                idx = order[start:start + batch_size]
                yield X[idx], y[idx]

    return Loader()


# ------------------------------------------------------------------------- the lecture's code from here on
model = nn.Sequential(
    nn.Linear(64, 128),
    nn.ReLU(),
    nn.Linear(128, 10),
)
loss_fn = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)


def train_loop(dataloader, model, loss_fn, optimizer):
    size = len(dataloader.dataset)
    model.train()
    for batch, (X, y) in enumerate(dataloader):
        # Compute prediction and loss
        pred = model(X)
        loss = loss_fn(pred, y)

        # Backpropagation
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

        if batch % 10 == 0:
            loss, current = loss.item(), batch * batch_size + len(X)
            print(f"loss: {loss:>7f}  [{current:>5d}/{size:>5d}]")


def test_loop(dataloader, model, loss_fn):
    model.eval()
    size = len(dataloader.dataset)
    num_batches = len(dataloader)
    test_loss, correct = 0, 0

    with torch.no_grad():
        for X, y in dataloader:
            pred = model(X)
            test_loss += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).sum().item()   # torch: (...).type(torch.float).sum().item()

    test_loss /= num_batches
    correct /= size
    print(f"Test Error: \n Accuracy: {(100 * correct):>0.1f}%, Avg loss: {test_loss:>8f} \n")
    return correct


def main() -> int:
    X, y = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    train_dataloader = batches(X_train, y_train, batch_size, shuffle=True)
    test_dataloader = batches(X_test, y_test, batch_size, shuffle=False)
    for t in range(epochs):
        print(f"Epoch {t + 1}\n-------------------------------")
        train_loop(train_dataloader, model, loss_fn, optimizer)
        accuracy = test_loop(test_dataloader, model, loss_fn)
    print("Done!")
    print(f"held-out accuracy on {len(X_test)} digits: {accuracy:.2%}")
    return 0 if accuracy >= 0.90 else 1


if __name__ == "__main__":
    sys.exit(main())
