"""The application layer: everything only the ``loupe`` command line needs.

``cli`` (the parser; one module per subcommand under ``commands``), ``models`` (model specs and
the built-in models, one :class:`~torchloupe.app.models.BuiltinModel` record each),
``checkpoints`` (safe ``--weights`` loading), ``images`` (image and label files), ``text``
(sentences for text models) and ``subjects`` (the demo report's models). It may import every
other layer; nothing imports it.
"""
