"""LVIS evaluation: the fast evaluator (`lvis_fast`) and the official `lvis` API (`lvis_official`;
`lvis_numpy2` makes it run on NumPy 2), the run record's metrics (`evaluate`, which imports Detectron2) and
the bootstrap over validation images (`bootstrap`).

Nothing is imported here: the .pth file that scripts/bootstrap.sh installs imports
`suite.evaluation.lvis_numpy2` at every interpreter start, which must stay standard library only.
"""
