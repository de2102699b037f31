"""The official `lvis` API (lvis==0.5.3) on NumPy >= 1.24.

Its `LVISEval.accumulate` calls `astype(dtype=np.float)`; NumPy 1.24 removed that alias of the
builtin `float` (it meant float64 there). `lvis_numpy_aliases()` puts `np.float = float` back
only while a block runs and removes it afterwards, so nothing else ever sees it. Not for use
from several threads at once.
"""

from contextlib import contextmanager

import numpy as np


@contextmanager
def lvis_numpy_aliases():
    """Within the block `np.float` is the builtin `float` (as before NumPy 1.24)."""
    added = "float" not in np.__dict__
    if added:
        np.float = float
    try:
        yield
    finally:
        if added:
            del np.float
