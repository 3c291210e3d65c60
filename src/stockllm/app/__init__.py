"""The web app (``stockllm app``): Gradio tabs over the same functions as the CLI.

``ui`` builds and serves the page; each tab is its own module (``forecast_tab``, ``evaluation_tab``,
``backtest_tab``, ``trading_tab``, ``data_tab``) holding plain functions the tests call without a browser and
the components that call them. ``jobs`` runs long work (models in worker processes, cancel, progress).
This package file imports nothing, so a model's worker process starts without loading the web stack.
"""
