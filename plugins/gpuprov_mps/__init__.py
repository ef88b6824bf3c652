"""gpuprov mps plugin."""
