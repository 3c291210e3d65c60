# llama.cpp against transformers on the same origins: one model dir, greedy answers, next day (1:1),
# every 20th trading day of the results period, all 41 companies (report summaries beside this file).
# The model dir is a 3-step run (the 60-minute model of docs/results.md was not kept, and this session's
# cores were about 4x slower than the ones it was trained on): a comparison of the backends, not of the model.
.venv/bin/stockllm train --data-dir data --windows 1:1,5:5 --fields seed-example --context none \
  --val-start 2025-09-01 --test-start 2025-11-03 --max-steps 3 --batch-size 4 --gradient-accumulation-steps 1 \
  --eval-examples 8 --model-dir outputs/quick/model --output-dir outputs/quick/train --report-to none
for backend in transformers llama.cpp; do
  .venv/bin/stockllm evaluate --data-dir data --windows 1:1 --start 2025-11-03 --stride 20 \
    --models llm:outputs/quick/model --backend $backend --report outputs/backends/$backend
done
.venv/bin/python tools/compare_reports.py outputs/backends/transformers outputs/backends/llama.cpp
