"""Live trading sessions: one tick of a strategy against an exchange, under risk limits."""
