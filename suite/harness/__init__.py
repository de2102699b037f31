"""Training Mask R-CNN with the suite's losses (`suite train`, `suite eval`), and a run's state
and record. Evaluation is `suite.evaluation`'s; the demo and the loss study, `suite.workflows`'."""
