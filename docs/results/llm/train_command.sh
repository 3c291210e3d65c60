.venv/bin/stockllm train --data-dir data --windows 1:1,5:5 --fields seed-example --context none \
  --val-start 2025-09-01 --test-start 2025-11-03 \
  --max-steps 120 --batch-size 4 --gradient-accumulation-steps 4 --eval-examples 64 --time-budget 50m \
  --model-dir outputs/llm/model --output-dir outputs/llm/train
