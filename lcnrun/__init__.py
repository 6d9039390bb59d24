"""lcnrun."""
