#!/usr/bin/env python3
"""Reads cargo's --message-format=json on stdin and copies every executable of target kind KIND
into DEST as `<package>--<target>`; prints `<name>\t<package dir>` per binary (tests run from their
package directory, where their fixtures are). Usage: gpu_collect.py KIND DEST"""
import json
import os
import shutil
import sys

kind, dest = sys.argv[1], sys.argv[2]
root = os.getcwd()
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    t = m["target"]
    if kind not in t["kind"]:
        continue
    manifest_dir = os.path.dirname(m["manifest_path"])
    pkg = os.path.basename(manifest_dir)
    name = pkg + "--" + t["name"]
    shutil.copy2(m["executable"], os.path.join(dest, name))
    print(name + "\t" + os.path.relpath(manifest_dir, root))
