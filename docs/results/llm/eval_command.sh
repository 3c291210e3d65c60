# The LLM row of docs/results.md: the fine-tuned model beside every baseline over the results period.
# 1:1: every trading day of the period, all 41 companies (report in 1-1/; 33 minutes on 2 cores).
.venv/bin/stockllm evaluate --data-dir data --windows 1:1 --start 2025-11-03 \
  --models llm:outputs/llm/model,random_walk,drift,arima,ets,lstm,cnn,bestfour --report outputs/llm/evaluation_1-1
# 5:5: every 5th trading day (non-overlapping), on every 4th company by code (11 of 41; report in 5-5/).
.venv/bin/stockllm evaluate --data-dir data --codes 2301 2324 2357 2382 2465 3088 3706 5474 6166 6579 9921 \
  --windows 5:5 --stride 5 --start 2025-11-03 \
  --models llm:outputs/llm/model,random_walk,drift,arima,ets,lstm,cnn,bestfour --report outputs/llm/evaluation_5-5
