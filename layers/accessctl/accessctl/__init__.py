"""accessctl: just-in-time, expiring IAM access to Amazon RDS databases."""
