#!/usr/bin/env bash
# Builds baton's packages into dist/:
#   dist/baton_<version>-1_amd64.deb     Debian/Ubuntu package (cargo-deb)
#   dist/baton-<version>-x86-64.raw      Flatcar system extension (squashfs)
#   dist/SHA256SUMS, dist/baton-<version>-x86-64.raw.sha512 (for Ignition's
#   verification.hash)
#
# Usage: packaging/build.sh            (from anywhere in the repository)
# Needs: cargo, cargo-deb (cargo install cargo-deb --locked), mksquashfs
# (squashfs-tools), strip (binutils), python3. Honours CARGO_TARGET_DIR.
# packaging/check.sh validates the results.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
say() { printf 'build.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

for tool in cargo dpkg-deb gzip mksquashfs strip python3; do
    command -v "$tool" >/dev/null || die "$tool not found (mksquashfs: apt-get install squashfs-tools; strip: binutils)"
done
cargo deb --version >/dev/null 2>&1 || die "cargo-deb not found: cargo install cargo-deb --locked"

# Version and target directory, as cargo sees them.
read -r version target_dir < <(cargo metadata --format-version 1 --no-deps --locked | python3 -c '
import json, sys
m = json.load(sys.stdin)
(pkg,) = [p for p in m["packages"] if p["name"] == "baton"]
print(pkg["version"], m["target_directory"])')
deb_version="$version-1"
say "baton $version (target dir $target_dir)"

# The Debian changelog names the package version; a release bumps both.
changelog_version=$(sed -n '1s/^baton (\([^)]*\)).*/\1/p' packaging/deb/changelog)
[[ "$changelog_version" == "$deb_version" ]] ||
    die "packaging/deb/changelog starts with version '$changelog_version', expected '$deb_version': add an entry"

# Reproducible timestamps: the last commit's time (or now, outside git).
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

say "cargo build --release"
cargo build --release --locked -p baton --bin baton

# Man pages, completions and the list of linked crates go to
# target/release/baton-docs, where [package.metadata.deb] assets expect them.
# gen_docs only prints the command line's help (the same source as the
# binary's), so it runs from the dev build: an example in release would
# build every dependency once more (examples bring the dev-dependencies'
# features) and link it with fat LTO, for text that comes out the same.
docs="$target_dir/release/baton-docs"
rm -rf "$docs"
say "man pages and completions -> $docs"
cargo run --locked -q -p baton --example gen_docs -- "$docs" >/dev/null
[[ -s "$docs/man/baton.1" && -s "$docs/completions/baton.bash" && -s "$docs/completions/_baton" && -s "$docs/completions/baton.fish" ]] ||
    die "gen_docs did not write the man page and the three completions into $docs"

# Crates linked into the binary (normal dependencies of baton, transitively;
# build scripts' and tests' dependencies are not in the binary).
cargo metadata --format-version 1 --locked --filter-platform x86_64-unknown-linux-gnu | python3 -c '
import json, sys
m = json.load(sys.stdin)
pkgs = {p["id"]: p for p in m["packages"]}
nodes = {n["id"]: n for n in m["resolve"]["nodes"]}
(root,) = [i for i, p in pkgs.items() if p["name"] == "baton"]
seen, todo = set(), [root]
while todo:
    node = nodes[todo.pop()]
    for dep in node["deps"]:
        if any(k["kind"] is None for k in dep["dep_kinds"]) and dep["pkg"] not in seen:
            seen.add(dep["pkg"])
            todo.append(dep["pkg"])
print("Rust crates linked into /usr/bin/baton: name, version, license.\n")
for p in sorted((pkgs[i] for i in seen), key=lambda p: (p["name"], p["version"])):
    print("%s %s: %s" % (p["name"], p["version"], p["license"] or p.get("license_file") or "see the crate"))
' > "$docs/third-party-crates.txt"

# Debian policy: man pages gzip -9n compressed (cargo-deb leaves files under
# target/release/ as they are).
gzip -9nf "$docs"/man/*.1

mkdir -p dist
deb="dist/baton_${deb_version}_amd64.deb"
rm -f "$deb" "dist/baton-$version-x86-64.raw"

say "cargo deb -> $deb"
cargo deb --locked --no-build -p baton --deb-version "$deb_version" --output "$deb" >/dev/null
[[ -s "$deb" ]] || die "cargo deb wrote no $deb"

# cargo-deb writes no DEBIAN/md5sums; add it so that `dpkg --verify baton`
# and debsums can check the installed files.
unpacked="$target_dir/deb-unpacked"
rm -rf "$unpacked"
dpkg-deb --raw-extract "$deb" "$unpacked"
(cd "$unpacked" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum > DEBIAN/md5sums)
chmod 0644 "$unpacked/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz --build "$unpacked" "$deb" >/dev/null
rm -rf "$unpacked"

# Flatcar system extension: /usr only, plus the extension-release file that
# systemd-sysext matches against the host's os-release.
say "sysext -> dist/baton-$version-x86-64.raw"
tree="$target_dir/sysext/baton"
rm -rf "$tree"
install -D -m 0755 "$target_dir/release/baton" "$tree/usr/bin/baton"
strip --strip-unneeded "$tree/usr/bin/baton"
install -D -m 0644 systemd/baton.service "$tree/usr/lib/systemd/system/baton.service"
install -D -m 0644 packaging/sysext/10-baton.conf "$tree/usr/lib/systemd/system/multi-user.target.d/10-baton.conf"
install -D -m 0644 packaging/sysext/extension-release.baton "$tree/usr/lib/extension-release.d/extension-release.baton"
install -D -m 0644 packaging/deb/copyright "$tree/usr/share/doc/baton/copyright"
install -D -m 0644 "$docs/third-party-crates.txt" "$tree/usr/share/doc/baton/third-party-crates.txt"
find "$tree" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mksquashfs "$tree" "dist/baton-$version-x86-64.raw" -all-root -noappend -comp gzip -no-xattrs -quiet -no-progress >/dev/null

(
    cd dist
    sha512sum "baton-$version-x86-64.raw" | cut -d' ' -f1 > "baton-$version-x86-64.raw.sha512"
    sha256sum "baton_${deb_version}_amd64.deb" "baton-$version-x86-64.raw" > SHA256SUMS
)
say "done:"
ls -l "dist/baton_${deb_version}_amd64.deb" "dist/baton-$version-x86-64.raw" >&2
