"""Sound-guided semantic image manipulation."""
