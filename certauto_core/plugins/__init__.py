"""The destination plugin contract: hook specifications, records, errors and the manager."""
