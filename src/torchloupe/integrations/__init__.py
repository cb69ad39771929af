"""Integrations with other tools: ``tensorboard`` and ``visdom`` (each an optional extra)."""
