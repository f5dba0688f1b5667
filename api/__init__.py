"""effnet (placeholder)."""
