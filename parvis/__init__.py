"""Parvis: free public Wi-Fi for towns. This package holds what the portal and netctl share."""

__version__ = "0.1.0"
