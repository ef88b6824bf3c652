"""gpuprov mig plugin."""
