"""Project-wide pytest configuration (unit tests and nbval)."""


def pytest_collectstart(collector):
    """Do not compare stderr of notebook cells: tqdm progress bars write there."""
    path = getattr(collector, "path", None)
    if path is not None and path.suffix == ".ipynb":
        collector.skip_compare += ("stderr",)
