"""Session recordings: each producer's packets written to its own file as they arrive, never transcoded."""
