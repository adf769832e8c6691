#!/usr/bin/env python3
"""Real OPA, as an oracle for Palisade's differential test.

Reads one JSON request per line on stdin:
  {"modules": {"name.rego": "..."}, "data": {...}, "query": "diff.rbac.decision",
   "inputs": [{...}, ...]}
and answers one JSON line per request:
  {"results": [{"value": ...} | {"undefined": true} | {"error": "..."}, ...]}
or {"load_error": "..."} when the policy does not load.

OPA runs embedded through the PyPI package opa-golib-python-bindings
(pinned in scripts/setup.sh), with OPA 1.x defaults: Rego v1.
"""
import json
import sys

from opa_bindings import OpaEngine
from opa_bindings.engine import OpaError, OpaUndefinedError


def answer(request):
    with OpaEngine() as engine:
        try:
            for name, source in request["modules"].items():
                engine.add_policy(name, source)
            if request.get("data") is not None:
                engine.add_data(request["data"])
        except OpaError as e:
            return {"load_error": str(e)}
        results = []
        for doc in request["inputs"]:
            try:
                results.append({"value": engine.eval_document(request["query"], doc)})
            except OpaUndefinedError:
                results.append({"undefined": True})
            except OpaError as e:
                results.append({"error": str(e)})
        return {"results": results}


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = answer(json.loads(line))
        except Exception as e:  # a broken request: say so, keep serving
            reply = {"load_error": f"oracle: {type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
