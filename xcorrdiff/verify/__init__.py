"""Ensemble verification (numpy + xarray, no torch): CRPS, spread-skill, rank histograms, spectra."""
