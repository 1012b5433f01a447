"""The ``stowage`` command line (Typer)."""
