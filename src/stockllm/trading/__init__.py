"""Trading: Taiwan market rules and costs, strategy, backtest, the stock_api client and a local exchange."""
