"""Inverse reinforcement learning: MaxEnt IRL, tabular (exact passes) and, later, deep."""
