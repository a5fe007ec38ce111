"""Training loops: one module per thing trained."""
