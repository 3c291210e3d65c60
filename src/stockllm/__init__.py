"""stockllm — forecast Taiwan stock prices with a LoRA fine-tuned LLM and measure it against baselines.

Data flows one way: ``sources`` → ``store`` → ``dataset``/``prompts`` → ``forecasters`` → evaluation,
charts, trading and the app. See the README's architecture section.
"""

__version__ = "0.1.0"
