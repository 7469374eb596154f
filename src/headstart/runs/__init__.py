"""Run directories: what a fit leaves behind, and loading it back without running any code."""
