from bench.models.backbones import load_backbone
from benchmarks.rollout_speed import rollout_speed, format_report
bb = load_backbone("smollm2-135m")
for l in format_report(rollout_speed(bb, [1, 8], 32, repeats=1))[3:]: print(l)
