"""One module per DVC stage, each a short recipe: load -> set up -> run -> save.

``stages/<name>.py`` at the repository root parses a stage's arguments and calls ``run`` of
the module with the same name here. A stage's ``deps`` in dvc.yaml list exactly the grmu
modules it imports (and the files they read): ``grmu.stagedeps`` derives them and a test
checks dvc.yaml against it.
"""

from __future__ import annotations

from pathlib import Path


def ratio_files(params: dict, forget_dir, out_dir, live_dir=None):
    """For each ratio of a seed's stage (``params['ratios']``): its forget set
    ``forget_dir/{ratio}.json``, its checkpoint ``out_dir/{ratio}.pt`` (the outputs go beside it)
    and its curves folder ``live_dir/{ratio}`` (None without ``live_dir``)."""
    for r in params["ratios"]:
        live = None if live_dir is None else Path(live_dir) / str(r)
        yield Path(forget_dir) / f"{r}.json", Path(out_dir) / f"{r}.pt", live
