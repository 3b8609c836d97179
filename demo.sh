#!/usr/bin/env bash
# README command one: builds HaMesh and runs the local demo (coordinator + two agents as real
# processes on loopback, no root needed).
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build HaMesh.sln -c Release -nologo -v:quiet -clp:NoSummary >/dev/null
exec dotnet src/Tools/Lab/bin/Release/net10.0/hamesh-lab.dll demo "$@"
