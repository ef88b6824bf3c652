"""gpuprov numa plugin."""
