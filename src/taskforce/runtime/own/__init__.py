"""taskforce's own process: its pidfile, detaching, its open-file limit, its files, its memory."""
