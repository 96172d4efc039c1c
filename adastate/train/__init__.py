"""Training: procedural data → VAE → teacher → causal student → Self-Forcing DMD (see recipe.py)."""
