"""What an experiment found: statistics and significance, the figures, and report.html."""
