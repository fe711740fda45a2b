"""Per-frame processing stages: reading, header mapping, extraction, astrometry, quality gates."""
