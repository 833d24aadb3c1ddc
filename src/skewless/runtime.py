"""What a pipeline step's process sets up: Python's cyclic garbage collector, the Keras that
TensorFlow loads in a process that only runs TFT's analysis, and TensorFlow's thread pools.

Each step runs in a process of its own (a kfp.local subprocess, a pod on a cluster) that imports
KFP, pandas and, for transform and train, TensorFlow and Beam: millions of objects that live until
the process ends. The cyclic collector walks every one of them at each full collection, and again
at exit, where the interpreter's last collections took 1.5 to 3.5 s of CPU in a process that had
imported TensorFlow (more than the transform step's Beam pipeline on 15k rows). Frozen objects are
out of its reach; reference counting still frees them as before.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys

# TensorFlow's own variable, read once when its runtime starts; a value the user set is kept.
INTRA_OP_THREADS = "TF_NUM_INTRAOP_THREADS"


def freeze_heap() -> None:
    """Exempts the objects alive now, and those alive at exit, from the cyclic garbage collector.

    Called by each step, in its own process, once its imports are done; never in a long-lived
    process (a test session, a server), where cycles among frozen objects would never be
    collected. On the taxi sample's transform step: exit 1.8 s -> 0.15 s, CPU 13.6 s -> 11.3 s.
    """
    gc.freeze()
    # Runs before the interpreter's final collections, after the step has written its outputs.
    atexit.register(gc.freeze)


def legacy_keras(caller: str = "legacy_keras") -> None:
    """Makes ``tf.keras`` Keras 2 (``tf_keras``) in this process; call it before anything imports
    TensorFlow. A value of ``TF_USE_LEGACY_KERAS`` the user set is kept.

    Raises:
        RuntimeError: TensorFlow is already imported (too late to choose its Keras); the message
            names ``caller``.
    """
    if "tensorflow" in sys.modules:
        raise RuntimeError(f"{caller}() must run before TensorFlow is imported")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def tft_keras_only() -> None:
    """Makes TensorFlow load Keras 2 (``tf_keras``) only, in a process that runs TFT's analysis and
    builds no Keras 3 model; call it before anything imports TensorFlow.

    TFT works with Keras 2 alone and imports ``tf_keras`` itself; it sets
    ``TF_USE_LEGACY_KERAS=1`` too, but only after TensorFlow's own import has loaded Keras 3 whole
    (with scikit-learn and SciPy: about 1 s of the import's CPU, 5.7 s -> 4.5 s on the taxi
    sample's transform step), for nothing. The analysis and its transform graph are the same.

    Raises:
        RuntimeError: TensorFlow is already imported (too late to choose its Keras).
    """
    legacy_keras("tft_keras_only")


def one_thread_per_op() -> None:
    """Makes TensorFlow run each op on one thread in this process, unless the user set
    ``TF_NUM_INTRAOP_THREADS``; call it before TensorFlow's runtime starts (its first op), which
    is when TensorFlow reads the variable. Child processes inherit it (the server's REST workers).

    By default TensorFlow splits an op across an intra-op pool of one thread per core, whose idle
    threads spin for work. Our ops are small (a ranking call's, a training step's on 1,024 rows
    by a few hundred units) and the inter-op pool, kept, already runs independent ops side by
    side: the second pool only took cores from the work beside it. The server: 4 to 7% less CPU
    per request (docs/serving.md). The train step, whose ranking and retrieval stages train in
    two threads (:mod:`skewless.model.train`): docs/performance.md. The multi-worker path
    (:mod:`skewless.model.distributed`) was not measured with it and does not call it.
    """
    os.environ.setdefault(INTRA_OP_THREADS, "1")
