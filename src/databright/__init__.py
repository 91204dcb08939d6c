"""DataBright: a data curation market for machine learning."""

__version__ = "0.1.0"
