#!/usr/bin/env python3
"""Prints every query of a Grafana dashboard (JSON, argument 1) as a Prometheus recording rule,
so `promtool check rules` parses each one:
    scripts/lib/dashboard-rules.py docs/grafana/tower-scale.json > /tmp/q.yml
    promtool check rules /tmp/q.yml
"""
import json
import sys

dashboard = json.load(open(sys.argv[1]))
print("groups:\n  - name: dashboard-queries\n    rules:")
n = 0
for panel in dashboard["panels"]:
    for target in panel.get("targets", []):
        n += 1
        print(f"      - record: dashboard_query_{n}")
        print(f"        expr: {json.dumps(target['expr'])}")
if n == 0:
    sys.exit("no queries in " + sys.argv[1])
