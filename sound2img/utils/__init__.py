"""Small helpers shared by every layer (device choice, atomic file writes)."""
