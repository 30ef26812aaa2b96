"""Optimisers and learned surrogates, independent of calorimeter physics.

This package never imports :mod:`diffcalo`: optimisers see only a search space and an objective.
"""

__all__: list[str] = []
