"""Rectified flow: the training objective (`objective`), guidance (`guidance`) and samplers
(`samplers`). Import submodules directly; this package imports no torch itself."""
