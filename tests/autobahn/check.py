#!/usr/bin/env python3
"""Checks an Autobahn|Testsuite report against the expected results.

    check.py INDEX.json EXPECTED.json [--agent wsgate] [--bless]

INDEX.json is the fuzzingserver's outdir/index.json (agent -> case id ->
{"behavior", "behaviorClose", "duration", "reportfile", ...}). EXPECTED.json
maps case id -> {"behavior", "behaviorClose"}. The check passes when the
report has exactly the expected cases, each with the expected verdicts, and
every verdict is OK or INFORMATIONAL.

--bless rewrites EXPECTED.json from the report. A case whose verdict is not
OK or INFORMATIONAL is never blessed as is: it is written as OK (what it
must become) and listed, so the check keeps failing until it is fixed.
"""
import argparse
import json
import os
import sys
from collections import OrderedDict

GOOD = ("OK", "INFORMATIONAL")
FIELDS = ("behavior", "behaviorClose")


def case_key(case_id):
    return tuple(int(part) for part in case_id.split("."))


def describe(index_dir, result, width=160):
    """The case's description and Autobahn's words on the outcome."""
    try:
        with open(os.path.join(index_dir, result["reportfile"])) as f:
            case = json.load(f)
    except (KeyError, OSError, ValueError):
        return ""
    words = []
    for key in ("description", "result", "resultClose"):
        text = " ".join(str(case.get(key) or "").split())
        if text:
            words.append("%s: %s" % (key, text if len(text) <= width else text[: width - 3] + "..."))
    return "\n".join("      " + w for w in words)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("index")
    parser.add_argument("expected")
    parser.add_argument("--agent", default="wsgate")
    parser.add_argument("--bless", action="store_true")
    args = parser.parse_args()

    with open(args.index) as f:
        index = json.load(f)
    if args.agent not in index:
        print("autobahn: no results for agent %r in %s" % (args.agent, args.index))
        return 1
    report = index[args.agent]
    index_dir = os.path.dirname(args.index)
    ids = sorted(report, key=case_key)

    # Time per section, to see where the run goes (9.* dominates).
    sections = OrderedDict()
    for case_id in ids:
        section = case_id.split(".")[0] + ".*"
        sections[section] = sections.get(section, 0) + report[case_id].get("duration", 0)
    total = sum(sections.values())
    print("autobahn: time in cases %.1f s: %s" % (
        total / 1000.0, ", ".join("%s %.1f s" % (s, ms / 1000.0) for s, ms in sections.items())))

    bad = [i for i in ids if any(report[i][k] not in GOOD for k in FIELDS)]

    if args.bless:
        expected = OrderedDict()
        for case_id in ids:
            expected[case_id] = OrderedDict(
                (k, report[case_id][k] if report[case_id][k] in GOOD else "OK") for k in FIELDS)
        with open(args.expected, "w") as f:
            # One case a line, in case order: diffs show which cases moved.
            f.write("{\n%s\n}\n" % ",\n".join(
                "  %s: %s" % (json.dumps(i), json.dumps(v)) for i, v in expected.items()))
        print("autobahn: wrote %s: %d cases, %d not blessed (written as OK)%s" % (
            args.expected, len(ids), len(bad), ":" if bad else ""))
        for case_id in bad:
            r = report[case_id]
            print("  %s: behavior %s, behaviorClose %s" % (case_id, r["behavior"], r["behaviorClose"]))
            print(describe(index_dir, r))
        return 0

    with open(args.expected) as f:
        expected = json.load(f)
    problems = []
    for case_id in sorted(set(ids) | set(expected), key=case_key):
        got, want = report.get(case_id), expected.get(case_id)
        if got is None:
            problems.append("  %s: not in the report (expected %s)" % (case_id, want["behavior"]))
        elif want is None:
            problems.append("  %s: not in %s (got %s)" % (case_id, os.path.basename(args.expected), got["behavior"]))
        elif any(got[k] != want[k] or got[k] not in GOOD for k in FIELDS):
            problems.append("  %s: behavior %s, behaviorClose %s (expected %s, %s)\n%s" % (
                case_id, got["behavior"], got["behaviorClose"], want["behavior"], want["behaviorClose"],
                describe(index_dir, got)))
    print("autobahn: %d cases: %d OK/INFORMATIONAL, %d other" % (len(ids), len(ids) - len(bad), len(bad)))
    if problems:
        print("autobahn: %d cases differ from %s:" % (len(problems), os.path.relpath(args.expected)))
        print("\n".join(problems))
        print("autobahn: FAILED (report: %s)" % os.path.join(index_dir, "index.html"))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
