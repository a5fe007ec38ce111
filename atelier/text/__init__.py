"""Text conditioning: a frozen pretrained sentence encoder (all-MiniLM-L6-v2, Reimers & Gurevych 2019,
sentence-transformers), a cache of its per-caption outputs, and a compact copy that covers exactly
the words the world's captions use.

Its modules import torch; this file does not, so `import atelier.text` stays cheap.
"""
