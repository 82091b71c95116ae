"""The version of hf-heteroakd, recorded with saved results."""

__version__ = "0.1.0"
