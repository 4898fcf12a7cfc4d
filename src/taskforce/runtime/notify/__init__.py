"""Telling the outside about state changes: notification targets (webhooks, commands), systemd."""
