"""Training and evaluation of Mask R-CNN with the suite's losses, and the run records."""
