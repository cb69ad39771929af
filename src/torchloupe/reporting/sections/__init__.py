"""One module per report section; each calls :func:`torchloupe.reporting.base.register` with its key
and title, and is found by :func:`torchloupe.reporting.base.import_sections`. Where each stands in
the report is :data:`ORDER`, the one list to edit when a section is added or moved.
"""

#: The report's sections, in the order the page shows them: the model at a glance and its structure,
#: what it computes inside and what it learned, why it decides (class maps, pixels), what its units
#: want, attention and memory, fusion, and last whether the explanations can be trusted.
ORDER = (
    "overview",
    "architecture",
    "feature_maps",
    "weights",
    "weight_learning",
    "cam",
    "saliency",
    "feature_vis",
    "exemplars",
    "attention",
    "recurrent",
    "fusion",
    "quality",
)
