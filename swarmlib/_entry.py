"""Child side of :func:`swarmlib.launcher.run_nodes`: ``python -m swarmlib._entry FN_FILE``.

Loads the function its parent wrote (cloudpickle), calls it, and leaves
``("ok", result)`` or ``("error", traceback)`` in ``$SWARMLIB_WORKDIR/node-i/``
for the parent. Only ever reads what its own parent process wrote.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback
from pathlib import Path

from swarmlib._files import write_private


def main(fn_file: str) -> int:
    import cloudpickle

    out = Path(os.environ["SWARMLIB_WORKDIR"]) / f"node-{os.environ['SWARMLIB_NODE_INDEX']}"
    try:
        fn = cloudpickle.loads(Path(fn_file).read_bytes())
        outcome: tuple[str, object] = ("ok", fn())
        code = 0
    except BaseException:  # reported to the parent, which raises NodeProcessFailed
        text = traceback.format_exc()
        print(text, file=sys.stderr, flush=True)
        outcome = ("error", text.strip().splitlines()[-1])
        code = 1
    try:
        data = cloudpickle.dumps(outcome)
    except Exception as e:
        data, code = pickle.dumps(("error", f"its result cannot be pickled: {e}")), 1
    write_private(out / "result.pkl", data)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
