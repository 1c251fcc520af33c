"""Helpers shared by several test packages (imported as ``helpers.<module>``)."""
