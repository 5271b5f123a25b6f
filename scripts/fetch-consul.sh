#!/usr/bin/env bash
# Fetches Consul 1.8.7 from Debian bullseye into DIR (default target/consul) without touching
# the system's apt sources: apt-get runs with its own sources, lists and cache directories.
# Prints the binary's path.
set -euo pipefail
dir=${1:-target/consul}
if [ -x "$dir/consul" ]; then echo "$dir/consul"; exit 0; fi
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/sources" "$tmp/lists/partial" "$tmp/cache/archives/partial"
cat > "$tmp/sources/bullseye.sources" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bullseye
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
opts=(-q -o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$tmp/sources"
      -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache"
      -o APT::Sandbox::User=root)
apt-get "${opts[@]}" update >&2
(cd "$tmp" && apt-get "${opts[@]}" download consul >&2)
dpkg -x "$tmp"/consul_*.deb "$tmp/x"
install -m 0755 "$tmp/x/usr/bin/consul" "$dir/consul"
echo "$dir/consul"
