"""Ablation studies: rerun the seed's ablation tables (Mask R-CNN, RetinaNet, GroupNorm, EfficientDet) on any
data set, one real training run per row, laid out as the seed's tables.

`studies` states the tables as data (light to import), `runner` trains and scores the rows, `table` writes
the Markdown and `cost` counts parameters and multiply-adds.
"""
