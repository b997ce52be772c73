"""Studies: accuracy tables over models x datasets x seeds, tuning, speed and memory vs length."""
