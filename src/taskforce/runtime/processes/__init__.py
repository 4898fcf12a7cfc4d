"""Processes: spawning and signalling them, knowing them again, and the commands run for tasks."""
