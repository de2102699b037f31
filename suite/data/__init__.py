"""Data sets: the generated long-tailed LVIS-format set, LVIS-format checks, and registration
of both it and LVIS v1 with Detectron2 (`suite.data.register`, which imports Detectron2)."""
