"""The Python API, mirrored one to one by the command line."""
