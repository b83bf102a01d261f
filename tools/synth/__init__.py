"""Synthetic data: plate crops for the reader (plates.py) and street scenes for the detector (scenes.py)."""
