"""Edit pairs (a source scene, one edit of it and its exact truth), the edit evaluation set and
its preview."""
