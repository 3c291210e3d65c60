"""Adapters to the outside world (TWSE/TPEx prices, newsapi): small, throttled, replayable over HTTP."""
