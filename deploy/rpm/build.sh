#!/usr/bin/env bash
# Builds hamesh-agent, hamesh-coordinator and hamesh-cli RPMs: framework-dependent dotnet publish
# of the four programs into a staging tree, then rpmbuild -bb deploy/rpm/hamesh.spec.
#   deploy/rpm/build.sh [--no-build] [--aot-handler] [--version X.Y.Z] [--out DIR]
# --no-build publishes what `dotnet build -c Release` already produced (the CI test run uses it).
# --aot-handler publishes hamesh-fence-peer with Native AOT (needs clang and zlib1g-dev): DRBD starts the
#   handler at every promotion of a disconnected node, and the native one starts in ≈ 0.1 s instead of
#   ≈ 0.3–0.5 s (the failover bench measured kill → promoted p50 ≈ 0.35 s sooner with it).
# Prints one line per RPM written: "rpm: PATH".
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
version=0.1.0
out=$root/artifacts/rpm
nobuild=()
aot_handler=0
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) nobuild=(--no-build); shift ;;
    --aot-handler) aot_handler=1; shift ;;
    --version) version=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "build.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
command -v rpmbuild >/dev/null || { echo "build.sh: rpmbuild not found (Debian: apt-get install rpm)" >&2; exit 3; }

work=$(mktemp -d "${TMPDIR:-/tmp}/hamesh-rpm.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/stage
mkdir -p "$stage" "$out"

publish() { # project dir, staging name
  dotnet publish "$1" -c Release --no-self-contained -o "$stage/$2" "${nobuild[@]}" -nologo -v:quiet -p:GenerateDocumentationFile=false >/dev/null
  find "$stage/$2" \( -name '*.pdb' -o -name '*.xml' -o -name web.config \) -delete
  # x86_64 packages: native assets for other platforms (SQLite's) are dead weight
  if [ -d "$stage/$2/runtimes" ]; then
    find "$stage/$2/runtimes" -mindepth 1 -maxdepth 1 ! -name linux-x64 -exec rm -rf {} +
  fi
}
publish src/Agent agent
publish src/Coordinator coordinator
publish src/Cli cli
if [ "$aot_handler" = 1 ]; then
  cc=$(command -v clang || command -v clang-14 || true)
  [ -n "$cc" ] || { echo "build.sh: --aot-handler needs clang (Debian: apt-get install clang zlib1g-dev)" >&2; exit 3; }
  dotnet publish src/FencePeer -c Release -r linux-x64 -p:HaMeshAot=true -p:CppCompilerAndLinker="$cc" -o "$stage/fence-peer" \
    -nologo -v:quiet >/dev/null
  find "$stage/fence-peer" \( -name '*.pdb' -o -name '*.xml' -o -name '*.dbg' \) -delete
else
  publish src/FencePeer fence-peer
fi
mkdir -p "$stage/deploy"
cp -a deploy/systemd deploy/drbd deploy/examples deploy/README.md "$stage/deploy/"

rpmbuild -bb deploy/rpm/hamesh.spec \
  --define "_topdir $work/rpmbuild" \
  --define "stage $stage" \
  --define "version_number $version" \
  --define "_rpmdir $out" \
  --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
  --quiet >/dev/null
for f in "$out"/hamesh-*-"$version"-1.*.rpm; do
  echo "rpm: $f"
done
