"""The xarray data layer: units, regridding, normalization, tensor conversion, batching."""
