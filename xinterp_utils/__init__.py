"""Library behind the xinterp notebooks: data, encoders, fine-tuning, interpolation, figures."""

__version__ = "0.1.0"
