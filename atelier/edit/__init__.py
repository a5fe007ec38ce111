"""Editing images: inputs and masks from users, full-resolution windows, and the edit methods."""
