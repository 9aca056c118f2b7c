"""pytest plugins of the test suite, loaded only on request (``-p tests.plugins.<name>``)."""
