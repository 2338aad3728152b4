"""Exchanges behind one interface: ccxt clients (Gate, Binance) and the paper exchange."""
