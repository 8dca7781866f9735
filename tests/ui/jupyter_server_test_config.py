"""Server configuration for the Galata tests (the template's, plus root and the test notebooks' folder).

Galata opens a fresh temporary folder per test run; the tests upload the notebooks they need from
tests/ui/notebooks/ through the contents API, so no user files are touched.
"""

from jupyterlab.galata import configure_jupyter_server

configure_jupyter_server(c)  # noqa: F821 (c is injected by the config loader)

# CI runs as root on a fresh machine.
c.ServerApp.allow_root = True  # noqa: F821
# The news toast covers screenshots; answer it once, here.
c.LabApp.news_url = None  # noqa: F821
# Galata deletes its temp folders noisily at WARNING; keep CI logs to real errors.
c.ServerApp.log_level = "ERROR"  # noqa: F821
c.LabApp.log_level = "ERROR"  # noqa: F821
# Notebook 7 pages (served by the same server) expose their app too, so tests can run its commands.
c.JupyterNotebookApp.expose_app_in_browser = True  # noqa: F821
