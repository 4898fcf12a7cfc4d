"""The fleet tests: taskforce hosts sharing a configuration through a real etcd cluster."""
