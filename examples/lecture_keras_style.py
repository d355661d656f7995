"""The lecture's Keras code, with only the import changed: digits (8x8 images as 64 features) -> 10 classes.

    Keras:   from tensorflow import keras            fastnn:   import fastnn as keras
             from keras import layers                           from fastnn import layers

Everything below the imports is the lecture's code as its readers write it: Input + Dense(units,
activation=...), compile with string names (Keras's default learning rates), fit with validation_split,
``loss, acc = model.evaluate(...)`` and predict; the one addition is ``seed=0`` on Sequential, so that a
run is reproducible. Exits 1 below 90% test accuracy (85% for SGD).
"""

import sys

import numpy as np

import fastnn as keras
from fastnn import datasets, layers

X, y = datasets.load_digits()   # already scaled to [0, 1]
X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)

model = keras.Sequential([
    layers.Input(shape=(64,)),
    layers.Dense(128, activation="relu"),
    layers.Dense(10, activation="softmax"),
], seed=0)
model.summary()
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(X_train, y_train, epochs=20, batch_size=32, validation_split=0.1, verbose=0)
loss, acc = model.evaluate(X_test, y_test)
print(f"adam: test loss {loss:.4f}, test accuracy {acc:.2%} (val_accuracy {history.history['val_accuracy'][-1]:.2%})")

probs = model.predict(X_test[:5])            # the softmax outputs: one probability row per sample
print("predicted:", probs.argmax(axis=1), "true:", y_test[:5], "row sums:", np.round(probs.sum(axis=1), 4))

# the same network with plain SGD: Keras's default learning rate 0.01 (PyTorch's would be 0.001)
sgd = keras.Sequential([layers.Dense(128, activation="relu"), layers.Dense(10, activation="softmax")], seed=0)
sgd.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
sgd.fit(X_train, y_train, epochs=20, batch_size=32, validation_split=0.1, verbose=0)   # built here: 64 inputs
sgd_loss, sgd_acc = sgd.evaluate(X_test, y_test)
print(f"sgd:  test loss {sgd_loss:.4f}, test accuracy {sgd_acc:.2%}")

if acc < 0.90 or sgd_acc < 0.85:
    print("accuracy below the bar (adam 90%, sgd 85%)")
    sys.exit(1)
