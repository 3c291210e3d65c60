# The LLM's third run (2026-12-06): run 2's training command on the faster training path (bf16 autocast applied,
# batches grouped over the epoch, --compile), then 5:5 on all 41 companies, every 5th trading day of the results
# period, with every baseline on the same origins.
.venv/bin/stockllm train --data-dir data --windows 1:1,5:5 --fields seed-example --context none \
  --val-start 2025-09-01 --test-start 2025-11-03 \
  --max-steps 120 --batch-size 4 --gradient-accumulation-steps 4 --eval-examples 64 --time-budget 50m --compile \
  --model-dir outputs/llm/model3 --output-dir outputs/llm/train3
.venv/bin/stockllm evaluate --data-dir data --windows 5:5 --stride 5 --start 2025-11-03 \
  --models llm:outputs/llm/model3,random_walk,drift,arima,ets,lstm,cnn,bestfour --report outputs/llm/evaluation3_5-5_all
# 1:1 with the same model, every 5th trading day (as run 2's next-day row; report in 1-1/)
.venv/bin/stockllm evaluate --data-dir data --windows 1:1 --stride 5 --start 2025-11-03 \
  --models llm:outputs/llm/model3,random_walk,drift,arima,ets,lstm,cnn,bestfour --report outputs/llm/evaluation3_1-1_stride5
