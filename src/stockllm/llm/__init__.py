"""The fine-tuned LLM: loading (backends, packaged models), chat template, LoRA training, generation,
the :class:`~stockllm.forecasters.base.Forecaster` over a model dir, and the write-up's ``StockPredictor``.

Nothing here imports the command line; the CLI and the app call into this package.
Heavy libraries (torch, transformers, peft, trl) are imported by the submodules that need them, so
``import stockllm.llm`` stays cheap.
"""
