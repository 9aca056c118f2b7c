"""One module per DVC stage, each a short recipe: load -> set up -> run -> save.

``stages/<name>.py`` at the repository root parses a stage's arguments and calls ``run`` of
the module with the same name here. A stage's ``deps`` in dvc.yaml list exactly the grmu
modules it imports (and the files they read): ``grmu.stagedeps`` derives them and a test
checks dvc.yaml against it.
"""
