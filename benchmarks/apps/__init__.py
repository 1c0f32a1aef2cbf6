"""One small app per framework and session library, configured from the environment."""
