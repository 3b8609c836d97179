#!/usr/bin/env bash
# The test command (README): builds the solution warning-free (Release) and runs every test
# project with Microsoft.Testing.Platform: first every project but the network-namespace lab (in
# parallel), then the lab on its own (its scenarios are real daemons on real links and must not
# compete with the other suites for the 2 cores). Ends with one line: "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
mkdir -p artifacts
log=artifacts/test-output.log
lablog=artifacts/test-output-lab.log

if ! dotnet build HaMesh.sln -c Release -nologo -v:minimal -clp:NoSummary; then
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi

dotnet test --solution HaMesh.Suites.slnf -c Release --no-build --no-progress --ignore-exit-code 8 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
dotnet test --project tests/HaMesh.Lab.Tests -c Release --no-build --no-progress --ignore-exit-code 8 2>&1 | tee "$lablog"
labstatus=${PIPESTATUS[0]}

python3 - "$log" "$status" "$lablog" "$labstatus" <<'PY'
import re, sys
def counts(path, status):
    text = open(path, encoding="utf-8", errors="replace").read()
    def last(name):
        m = re.findall(rf"^\s*{name}:\s*(\d+)\s*$", text, re.M)
        return int(m[-1]) if m else 0
    passed, failed, skipped = last("succeeded"), last("failed"), last("skipped")
    if status != "0" and failed == 0:
        failed = 1  # the runner failed without a failing test (crash, abort, no summary): never report green
    return passed, failed, skipped
# The names of failed tests and the gist of why (the message lines, not the stack), repeated next to
# the summary so a CI log that keeps only its tail still says what broke.
for path in (sys.argv[1], sys.argv[3]):
    lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^failed (\S+)", line)
        if not m:
            continue
        why = []
        for detail in lines[i + 1:i + 40]:
            text = detail.strip()
            if re.match(r"^(failed|passed|skipped) \S+", detail) or text.startswith("Test run"):
                break
            if text and not text.startswith(("at ", "---", "from /")) and text not in ("Stack Trace:", "Error Message:"):
                why.append(text)
        gist = " | ".join(why)
        print(f"FAILED {m.group(1)}: {gist[:1500]}")
a = counts(sys.argv[1], sys.argv[2])
b = counts(sys.argv[3], sys.argv[4])
print(f"{a[0] + b[0]} passed, {a[1] + b[1]} failed, {a[2] + b[2]} skipped")
PY
[ "$status" = 0 ] && [ "$labstatus" = 0 ]
