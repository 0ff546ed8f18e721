"""After training: recommendations from a checkpoint, export and retrieval."""
