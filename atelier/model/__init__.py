"""The unified space-time transformer that fills in the unknown part of a latent canvas.

Import submodules directly (`atelier.model.transformer`); this package imports no torch itself.
"""
