"""The losses' forward and backward in closed form, each module named by what it computes:

    seesaw_terms                  Seesaw's class and objectness terms (seesaw)
    sigmoid_loss_sum              a weighted, focal-modulated per-class sigmoid loss (focal, eql)
    column_weighted_sigmoid_sum   a sigmoid cross-entropy with per-column weights (eqlv2, fed)
    seesaw_terms_cpu, column_weighted_sigmoid_sum_cpu
                                  the same maths as fused kernels, the default on the CPU
    cpu_compile                   how the fused kernels are built (torch.compile, eager fallback)

Nothing is imported here: a module's name stays the module, not the function it defines.
"""
