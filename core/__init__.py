"""pinnace: a small, hackable Linux container engine built from plugins."""

__version__ = "0.1.0"
