"""The subject segmenter: which pixels of an image belong to its objects, for automatic edit masks.

- `atelier.segment.model`: the network (a small U-Net) and its model folder.
- `atelier.segment.masks`: image in, masks out: the subject's probability and mask, its objects
  as connected components, and picking one of them by index or by a point.
- `atelier.train.segmenter`: `train_segmenter`, the one way to make the shipped weights.
- `atelier.segment.evaluate`: subject IoU against the world's ground-truth masks.

Importing this package does not import torch; the modules that need it do.
"""
