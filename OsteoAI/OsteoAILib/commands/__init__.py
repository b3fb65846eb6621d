"""CLI subcommands of the pipeline (run, demo)."""
