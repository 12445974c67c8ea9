"""What the reference fmf package makes of trees and conditions, as JSON.

Reads a JSON request on standard input and writes one JSON result per case:

    fmf_reference.py trees    {"cases": [{"root": DIR, "context": {DIM: [VALUES]} | null,
                                          "case_sensitive": BOOL}]}
        -> [{"nodes": [{"name", "data", "sources", "select"}]} | {"error": CLASS}]
    fmf_reference.py decide   {"cases": [{"rule": STR|BOOL, "context": {...},
                                          "case_sensitive": BOOL}]}
        -> ["yes" | "no" | "undecided" | "error:CLASS"]

Nodes are listed as fmf climbs them (each before its children, sorted by name), with their
data after inheritance and, unless the context is null, adjust.
"""

import json
import sys

import fmf
import fmf.context


def context_of(case):
    context = fmf.context.Context(**case["context"])
    context.case_sensitive = case["case_sensitive"]
    return context


_loaded = {}


def load(root):
    """Each tree is read once (fmf is slow to read) and copied for every context."""
    if root not in _loaded:
        try:
            _loaded[root] = fmf.Tree(root)
        except Exception as error:
            _loaded[root] = error
    loaded = _loaded[root]
    if isinstance(loaded, Exception):
        raise loaded
    return loaded.copy()


def tree_case(case):
    try:
        tree = load(case["root"])
        if case["context"] is not None:
            tree.adjust(context_of(case), case_sensitive=case["case_sensitive"])
    except Exception as error:  # every failure is a result to compare
        return {"error": type(error).__name__, "message": str(error)}
    return {
        "nodes": [
            {
                "name": node.name,
                "data": node.data,
                "sources": node.sources,
                "select": node.select,
            }
            for node in tree.climb(whole=True)
        ]
    }


def decide_case(case):
    try:
        return "yes" if context_of(case).matches(case["rule"]) else "no"
    except fmf.context.CannotDecide:
        return "undecided"
    except Exception as error:
        return "error:" + type(error).__name__


def main():
    mode = sys.argv[1]
    request = json.load(sys.stdin)
    handle = {"trees": tree_case, "decide": decide_case}[mode]
    json.dump([handle(case) for case in request["cases"]], sys.stdout, default=str)


if __name__ == "__main__":
    main()
