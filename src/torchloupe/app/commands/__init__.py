"""Subcommands of ``loupe``: one module each, exposing ``register(subparsers)``."""
