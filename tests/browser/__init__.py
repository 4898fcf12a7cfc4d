"""The browser tests: the dashboard driven by a headless chromium."""
