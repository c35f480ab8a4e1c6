#!/usr/bin/env bash
# Proves vendor/openraft is openraft 0.9.25 from crates.io plus
# openraft-0.9.25-baton.patch, and nothing else: downloads the published
# crate, checks its sha256 (the checksum Cargo.lock held for it), applies
# the patch and compares the trees.
set -euo pipefail
cd "$(dirname "$0")"
sha256=a97014fb78acb77be3a40ac2da305f6dd3a6b243f3a908ace87d29b3972eaafd
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -sSfL -o "$work/openraft.crate" https://static.crates.io/crates/openraft/openraft-0.9.25.crate
echo "$sha256  $work/openraft.crate" | sha256sum --check --quiet
tar -xzf "$work/openraft.crate" -C "$work"
rm -f "$work/openraft-0.9.25/.cargo-ok"
patch --quiet -d "$work/openraft-0.9.25" -p1 <openraft-0.9.25-baton.patch
diff -r "$work/openraft-0.9.25" openraft
echo "vendor/openraft = openraft 0.9.25 (sha256 ${sha256:0:12}...) + openraft-0.9.25-baton.patch"
