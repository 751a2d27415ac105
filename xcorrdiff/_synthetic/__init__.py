"""Private building blocks of :mod:`xcorrdiff.tutorial` (the known-truth synthetic data set).

``projection``  Lambert conformal conic (spherical, tangent cone), forward and inverse.
``fields``      random streams, FFT synthesis of Gaussian random fields, spectral AR(1) in time.
``domain``      the HR grid, its static fields, the LR grid and the LR → HR interpolation.
``weather``     the LR (ERA5-like) weather on the LR grid.
``physics``     the HR targets given the LR state: conditional means, noise scales, sampling.

Nothing here is public API; :mod:`xcorrdiff.tutorial` is.
"""
