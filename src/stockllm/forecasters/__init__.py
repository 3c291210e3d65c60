"""Forecasters: every model (LLM, LSTM, CNN, statistical, naive) behind one small interface (:mod:`.base`)."""
