"""Three Keras nodes; node 2 is SIGKILLed in the middle of training. The others must finish."""

import os
import signal

import keras
import numpy as np

from swarmlib import SwarmCallback

index = int(os.environ["SWARMLIB_NODE_INDEX"])
rng = np.random.default_rng(index)
x = rng.normal(size=(320, 8)).astype("float32")
y = (x.sum(axis=1) > 0).astype("float32")


class Die(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):  # type: ignore[no-untyped-def]
        if index == 2 and batch == 7:
            os.kill(os.getpid(), signal.SIGKILL)


model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1, activation="sigmoid")])
model.compile(optimizer="sgd", loss="binary_crossentropy")
swarm = SwarmCallback(sync_frequency=3, min_peers=2)
model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[swarm, Die()])
with open(os.path.join(os.environ["SWARMLIB_WORKDIR"], f"killed-{index}.bin"), "wb") as f:
    f.write(b"".join(w.tobytes() for w in model.get_weights()))
