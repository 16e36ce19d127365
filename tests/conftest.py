pytest_plugins = ["certauto_core.testing.pytest_plugin"]
