"""tests/ui is driven by Playwright (`make test-ui`), not pytest: its notebooks wait for a browser to press
Cancel, so pytest (and nbval, if run over tests/) must not collect anything here."""

collect_ignore_glob = ["*"]
