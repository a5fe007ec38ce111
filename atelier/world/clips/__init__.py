"""The clip world: scenes in motion (motion, staging), clip captions and queries, the clip
stream, the clip evaluation set and its preview."""
