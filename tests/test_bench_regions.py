"""The losses' OpenMP parallel regions per forward + backward at LVIS shape (suite.bench.regions).

Each region ends in a barrier that waits for any thread another process has descheduled, so the
count is what a loss pays under contention (docs/losses.md: speed on a busy machine). The kernels were
built to open few; these bounds are their counts, so a change that splits them into more block
operations fails here, where a timing test on a shared machine could not tell.
"""

from suite.bench.regions import count_regions

# seesaw: the zero-filled gradient, its class part in one parallel loop and the scatter of the
# foreground rows (the forward is single-threaded); seesaw_eager: the eager kernels, seven regions
# forward, four back; eqlv2, fed: the gradient's one parallel loop (the forward is single-threaded).
BOUNDS = {"seesaw": 3, "seesaw_eager": 11, "focal": 12, "eql": 8, "eqlv2": 1, "fed": 1}


def test_losses_open_few_parallel_regions():
    counts = count_regions(("torch_cross_entropy", "ce", *BOUNDS))
    # The counter sees torch's regions: F.cross_entropy opens four, the same through the suite.
    assert counts["torch_cross_entropy"] == counts["ce"] == 4
    over = {name: counts[name] for name, bound in BOUNDS.items() if counts[name] > bound}
    assert not over, f"more parallel regions than {BOUNDS}: {counts}"
