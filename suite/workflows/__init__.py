"""Workflows built on training, evaluation and the report: the demo (`suite demo`), the loss study
with paired seeds (`suite study`) and the pretrained start it shares across losses (`suite
pretrain`). The top floor under the command line: nothing below imports it."""
