"""Fault-injection helpers for the adversity suite (a TCP fault proxy, a pgbouncer runner)."""
