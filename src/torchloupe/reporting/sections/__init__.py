"""One module per report section; each calls :func:`torchloupe.reporting.base.register` with its
key, title and order, and is found by :func:`torchloupe.reporting.base.import_sections`: adding a
section is adding a module here. Orders leave gaps (10 overview ... 90 explanation quality;
``[(s.order, s.key) for s in tl.reporting.available_sections()]`` lists them).
"""
