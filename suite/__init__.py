"""seesaw-suite: benchmark and reproducibility suite for long-tailed instance segmentation losses."""

__version__ = "0.1.0"
