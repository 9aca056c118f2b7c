"""Results: ``gaps`` (deltas and avg. gap against the reference), ``tables`` (tables and plot
data), ``plots`` (figures) and ``compare`` (``grmu report`` across experiments). The DVC stage
that writes one experiment's results is ``grmu.stages.aggregate``."""
