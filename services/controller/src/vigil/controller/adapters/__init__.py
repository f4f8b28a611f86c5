"""Where definitions come from: a folder of YAML (`folder`) or the cluster (`kubernetes`)."""
