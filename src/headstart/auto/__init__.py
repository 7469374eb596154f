"""`auto`: choosing the model and the strategy within a time budget, from measured costs."""
