"""Source types: one module per `Source.spec.type`, registered in `app.py`."""
