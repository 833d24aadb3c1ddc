"""A step's process takes its heap out of the cyclic garbage collector's way, now and at exit."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
from support import step_environment

# gc.get_objects() lists what the collector tracks: frozen objects are not among them.
STEP = """
import atexit, gc
def collectable(obj):
    return any(o is obj for o in gc.get_objects())
# Registered before freeze_heap's own handler, so it runs after it (atexit is last in, first out).
atexit.register(lambda: print("at exit:", collectable(made_by_the_step)))
imported = {"a module's table": []}
from skewless.runtime import freeze_heap
freeze_heap()
print("after the imports:", collectable(imported))
made_by_the_step = [[] for _ in range(3)]
print("made by the step:", collectable(made_by_the_step))
"""


def test_freeze_heap_freezes_what_is_alive_now_and_what_is_alive_at_exit():
    done = subprocess.run(
        [sys.executable, "-c", STEP], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.splitlines() == [
        "after the imports: False",
        "made by the step: True",  # collectable while the step runs...
        "at exit: False",  # ...but no longer by the interpreter's final collections
    ]


# What a transform step's process imports: TFT's analysis, and no Keras 3.
TFT_ONLY = """
import sys
from skewless.runtime import tft_keras_only
tft_keras_only()
import tensorflow as tf
import tensorflow_transform
print("tf.keras:", tf.keras.__name__.split(".")[0], "keras 3 loaded:", "keras.src" in sys.modules)
try:
    tft_keras_only()
except RuntimeError as err:
    print(err)
"""


def test_a_tft_only_process_loads_keras_2_alone_and_says_when_it_is_too_late():
    done = subprocess.run([sys.executable, "-c", TFT_ONLY], capture_output=True, text=True,
                          check=True, timeout=120, env=step_environment())  # fmt: skip
    assert done.stdout.splitlines() == [
        "tf.keras: tf_keras keras 3 loaded: False",
        "tft_keras_only() must run before TensorFlow is imported",
    ]


def _body_imports(component) -> str:
    """The import lines of a component's body, as its step's process runs them."""
    body = inspect.getsource(component.python_func)
    return "\n".join(
        line.strip() for line in body.splitlines() if line.strip().startswith(("import ", "from "))
    )


@pytest.mark.parametrize("step", ["register", "deploy"])
def test_the_register_and_deploy_steps_import_neither_pandas_nor_the_spec_parsers(step: str):
    """Their component bodies' own imports: each step pays its imports in a process of its own."""
    from skewless.components import ranking

    script = _body_imports(getattr(ranking, step)) + (
        "\nimport sys\nprint(sorted(m for m in ('pandas', 'pyarrow.compute', "
        "'skewless.contract.spec') if m in sys.modules))"
    )
    assert "skewless" in script  # the body's imports were found
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


# The train step's body up to its heap freeze (the imports that load TensorFlow), then the threads
# TensorFlow's first op starts: its intra-op pool is among them (one thread per core by default).
COUNT_POOL = """
import os
import tensorflow as tf
print(os.environ["TF_NUM_INTRAOP_THREADS"])
before = len(os.listdir("/proc/self/task"))
tf.reduce_sum(tf.matmul(tf.ones([512, 512]), tf.ones([512, 512])))
print(len(os.listdir("/proc/self/task")) - before)
"""


def _train_body_before_the_freeze() -> str:
    from skewless.components import ranking

    body = inspect.getsource(ranking.train.python_func).split('"""', 2)[2]
    before = body.split("freeze_heap()\n", 1)[0]
    assert "one_thread_per_op()" in before  # the step asks for it, before its TensorFlow import
    return "\n".join(line.strip() for line in before.splitlines())


def test_the_train_step_runs_each_tensorflow_op_on_one_thread_unless_the_user_says():
    from skewless.runtime import INTRA_OP_THREADS

    env = {k: v for k, v in step_environment().items() if k != INTRA_OP_THREADS}
    script = _train_body_before_the_freeze() + COUNT_POOL

    def run(**user_sets: str) -> tuple[str, int]:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              check=True, timeout=600, env=env | user_sets)  # fmt: skip
        value, started = done.stdout.split()
        return value, int(started)

    (ours, started_with_one), (theirs, started_with_three) = run(), run(**{INTRA_OP_THREADS: "3"})
    assert (ours, theirs) == ("1", "3")  # the user's value wins
    assert started_with_three - started_with_one == 2  # and TensorFlow's pool follows it
