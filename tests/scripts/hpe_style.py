"""An HPE Swarm Learning-style Keras script: only the import line differs from HPE's."""

import logging
import os

import keras
import numpy as np

from swarmlib import SwarmCallback  # HPE: from swarmlearning.tf import SwarmCallback

index = int(os.environ["SWARMLIB_NODE_INDEX"])
rng = np.random.default_rng(index)
x = rng.normal(size=(320, 8)).astype("float32")
y = (x.sum(axis=1) > 0).astype("float32")
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dense(1, activation="sigmoid")])  # fmt: skip
model.compile(optimizer="adam", loss="binary_crossentropy")
swarm_callback = SwarmCallback(
    syncFrequency=int(os.environ.get("SYNC_FREQUENCY", "5")),  # the tests vary it
    minPeers=2,
    useAdaptiveSync=False,
    adsValData=(x[:64], y[:64]),
    adsValBatchSize=32,
    mergeMethod="coordmedian",
    nodeWeightage=100,
    checkinModelOnTrainEnd="snapshot",
    totalEpochs=2,
    logger=logging.getLogger("hpe-script"),
)
model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[swarm_callback])
weights = b"".join(w.tobytes() for w in model.get_weights())
out = os.path.join(os.environ["SWARMLIB_WORKDIR"], f"hpe-{index}.bin")
with open(out, "wb") as f:
    f.write(weights)
with open(out + ".backend", "w") as f:
    f.write(keras.backend.backend())
with open(out + ".voted_ahead", "w") as f:  # rounds whose vote was cast while batches trained
    f.write(str(sum(record["voted_ahead"] for record in swarm_callback.history)))
with open(out + ".kinds", "w") as f:  # each round's kind: initial, sync or final
    f.write(" ".join(record["kind"] for record in swarm_callback.history))
