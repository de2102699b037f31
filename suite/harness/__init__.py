"""Training Mask R-CNN with the suite's losses, and a run's state and record (its evaluation at
the end is `suite.evaluation`'s)."""
