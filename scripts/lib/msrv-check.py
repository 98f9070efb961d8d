#!/usr/bin/env python3
"""Fails when a workspace package declares a lower `rust-version` than a dependency it uses.

Reads `cargo metadata` (the dependency graph of Cargo.lock, with the workspace's features) on
standard input. For every workspace package, walks its normal and build dependencies (and
theirs), and compares each one's declared `rust-version` with the package's own. Prints one
line per package and exits 1 when any package's is too low, naming the dependency.

    cargo metadata --format-version 1 --locked | scripts/lib/msrv-check.py
"""
import json
import sys


def version(text):
    if not text:
        return None
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    meta = json.load(sys.stdin)
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    failed = False
    for member in sorted(meta["workspace_members"], key=lambda i: packages[i]["name"]):
        own = version(packages[member].get("rust_version"))
        name = packages[member]["name"]
        seen, stack, highest = set(), [member], None
        while stack:
            node = stack.pop()
            for dep in nodes[node]["deps"]:
                if all(kind["kind"] == "dev" for kind in dep["dep_kinds"]):
                    continue
                if dep["pkg"] in seen:
                    continue
                seen.add(dep["pkg"])
                stack.append(dep["pkg"])
                needs = version(packages[dep["pkg"]].get("rust_version"))
                if needs and (highest is None or needs > highest[0]):
                    highest = (needs, packages[dep["pkg"]]["name"])
        if own is None:
            print(f"{name}: declares no rust-version")
            failed = True
        elif highest and highest[0] > own:
            wanted = ".".join(map(str, highest[0]))
            have = ".".join(map(str, own))
            print(f"{name}: rust-version {have}, but {highest[1]} needs {wanted}")
            failed = True
        else:
            needs = ".".join(map(str, highest[0])) if highest else "-"
            print(f"{name}: rust-version {'.'.join(map(str, own))} (dependencies need {needs})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
