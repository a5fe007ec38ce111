"""The image world: scenes, their rendering, captions and queries, the training stream, the
image evaluation set and its preview."""
