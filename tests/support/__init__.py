"""What the tests share: waiting on conditions, reading processes through /proc, running
taskforce as a user would, building configurations, and fakes. Fixtures stay in conftest.py.
"""
