"""Opt-in pytest plugin and test harness for CertAuto and its destination plugins."""
