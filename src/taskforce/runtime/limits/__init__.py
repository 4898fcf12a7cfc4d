"""What confines a task's instances: a cgroup each (limits, accounting, killing), memory_restart.

The limits a process sets itself between fork and exec are :mod:`..processes.child_setup`'s.
"""
