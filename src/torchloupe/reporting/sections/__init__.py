"""One module per report section; each calls :func:`torchloupe.reporting.base.register`.

Order numbers (leave gaps): 10 overview/predictions, 20 architecture, 30 feature maps,
40 weights, 45 weight learning, 50 class activation maps, 55 guided backprop / deconvnet,
60 feature visualization, 65 dataset exemplars, 70 attention, 75 recurrent memory,
80 feature fusion, 90 explanation quality.
"""
