#!/usr/bin/env bash
# The main job on one machine: a scripted session on the virtual board.
# Run it with `make demo` (which builds bin/jmp first).
set -euo pipefail
cd "$(dirname "$0")/.."
jmp="$PWD/bin/jmp"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp examples/virtual-board.yaml "$work/"

# A new "OS image" to flash: 2 MiB of random bytes, xz-compressed.
head -c 2M /dev/urandom > "$work/image.raw"
sum=$(sha256sum "$work/image.raw" | cut -d' ' -f1)
xz -k -T1 "$work/image.raw"

cd "$work"
"$jmp" shell --exporter-config virtual-board.yaml -- bash -euo pipefail -c '
step() { printf "\n\033[1m== %s\033[0m\n" "$*"; }

step "The device: j with no arguments prints its driver tree"
j

step "Power on and wait for the boot log on the console"
j serial expect --timeout 10s "login:" -- j power on
echo

step "Run a command on the board'"'"'s console"
j serial expect --send "uname -a" "GNU/Linux"
echo

step "Run a command the exporter offers"
j scripts run hello name=demo

step "Flash a new image (xz, decompressed on the fly)"
j storage flash image.raw.xz --sha256 '"$sum"'

step "Power cycle: the boot log names the new image"
j serial expect --timeout 10s "Image sha256 '"$sum"'" -- j power cycle
echo

step "Power off"
j power off
j power status
'
printf '\nDemo done: every step above ran against the virtual board through jmp shell.\n'
