"""The HTTP API (FastAPI): thin routes over the same functions the CLI calls."""
