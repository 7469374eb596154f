"""headstart: transfer learning from a small labelled data set."""

__version__ = "0.1.0"
