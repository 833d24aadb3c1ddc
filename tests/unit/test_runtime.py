"""A step's process takes its heap out of the cyclic garbage collector's way, now and at exit."""

from __future__ import annotations

import subprocess
import sys

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
