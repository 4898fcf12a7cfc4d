"""The supervisor's event loop: planning passes, the actions they decide, reaping, signals."""
