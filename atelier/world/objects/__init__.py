"""The 3D world: solids, cameras, objects and their views, captions and queries, the object
evaluation set and the turntable preview."""
