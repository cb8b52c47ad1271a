"""Keras nodes and one numpy-only node (no Keras at all) in the same swarm, same architecture."""

import os

import numpy as np

index = int(os.environ["SWARMLIB_NODE_INDEX"])
count = int(os.environ["SWARMLIB_NODE_COUNT"])
EPOCHS, BATCH, SAMPLES, SYNC = 2, 32, 320, 5
rng = np.random.default_rng(index)
x = rng.normal(size=(SAMPLES, 8)).astype("float32")
y = (x.sum(axis=1) > 0).astype("float32")

if index == count - 1:  # numpy-only node: logistic regression with the same weights layout
    import sys

    from swarmlib import SwarmNode

    assert "keras" not in sys.modules and "tensorflow" not in sys.modules
    w = [np.zeros((8, 1), np.float32), np.zeros(1, np.float32)]
    steps = EPOCHS * (SAMPLES // BATCH)
    with SwarmNode.from_env() as node:
        w = node.sync(w, SAMPLES, kind="initial").weights  # the callback's initial sync
        for step in range(1, steps + 1):
            xb, yb = x[(step * BATCH) % SAMPLES :][:BATCH], y[(step * BATCH) % SAMPLES :][:BATCH]
            p = 1 / (1 + np.exp(-(xb @ w[0] + w[1])))
            g = (p.ravel() - yb) / BATCH
            w = [w[0] - 0.1 * (xb.T @ g)[:, None], w[1] - 0.1 * g.sum(keepdims=True)]
            if step % SYNC == 0:
                w = node.sync(w, SAMPLES).weights
        if steps % SYNC:  # the callback's final sync, when batches trained since the last one
            w = node.sync(w, SAMPLES).weights
    final = w
else:
    import keras

    from swarmlib import SwarmCallback

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    callback = SwarmCallback(sync_frequency=SYNC, min_peers=count, batch_size=BATCH)
    model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0, callbacks=[callback])
    final = model.get_weights()
out = os.path.join(os.environ["SWARMLIB_WORKDIR"], f"mixed-{index}.bin")
with open(out, "wb") as f:
    f.write(b"".join(np.asarray(a, np.float32).tobytes() for a in final))
