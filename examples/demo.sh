#!/usr/bin/env bash
# The whole system on one machine: a scripted session on the virtual board
# in local mode, then a coordinator with its built-in relay, an exporter
# and client sessions through the mesh, first direct, then relayed.
# Run it with `make demo` (which builds bin/jmp first).
set -euo pipefail
cd "$(dirname "$0")/.."
jmp="$PWD/bin/jmp"
examples="$PWD/examples"

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
cp examples/virtual-board.yaml "$work/"

# waitfor DESCRIPTION COMMAND...: polls COMMAND until it succeeds, for 15 s.
waitfor() {
  local what=$1; shift
  for _ in $(seq 150); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "demo: timed out waiting for $what" >&2
  return 1
}

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

printf '\n\033[1m==== Distributed mode: a coordinator, an exporter and the mesh\033[0m\n'
lab="$work/lab"
mkdir "$lab"
cd "$lab"
# The coordinator on loopback, ports of the system's choosing, with its
# built-in relay (QUIC and a probe port on UDP, TLS on TCP).
"$jmp" coordinator --data-dir "$lab/data" --listen 127.0.0.1:0 --relay-udp 127.0.0.1:0 \
  --relay-probe-udp 127.0.0.1:0 --relay-tcp 127.0.0.1:0 >"$lab/coordinator.log" 2>&1 &
pids+=($!)
waitfor "the coordinator" test -s "$lab/data/admin.yaml"
admin=(env JMP_CLIENT_CONFIG="$lab/data/admin.yaml" XDG_CONFIG_HOME="$lab/xdg")
echo "coordinator: $(grep -o 'endpoint=[^ ]*' "$lab/coordinator.log" | head -1 | cut -d= -f2)"
echo "built-in relay: $(sed -n 's/.*built-in relay up" //p' "$lab/coordinator.log")"

# An exporter with the virtual board, and a client.
"${admin[@]}" "$jmp" admin create exporter bench-01 --label board=virtual \
  --export-from "$examples/virtual-board.yaml" -o "$lab/bench-01.yaml" >/dev/null
"$jmp" run --exporter-config "$lab/bench-01.yaml" >"$lab/exporter.log" 2>&1 &
pids+=($!)
waitfor "the exporter" grep -q "online at the coordinator" "$lab/exporter.log"
"${admin[@]}" "$jmp" admin create client demo -o "$lab/demo.yaml" >/dev/null
"${admin[@]}" "$jmp" get exporters

cd "$work"
for path in direct relay; do
  printf '\n\033[1m== jmp shell -l board=virtual --path %s\033[0m\n' "$path"
  # The shell leases the board, connects through the mesh, says which path
  # it took and its round-trip time (stderr; j says it too), and releases
  # the lease on exit.
  XDG_CONFIG_HOME="$lab/xdg" "$jmp" shell --client-config "$lab/demo.yaml" -l board=virtual --path "$path" -- bash -euo pipefail -c '
j
j serial expect --timeout 10s "login:" -- j power on | grep "login:"
j serial expect --send "uname -a" "GNU/Linux" | grep "GNU/Linux"
TIMEFORMAT="flashed 2 MiB through the mesh in %Rs"
time (j storage flash image.raw.xz 2>&1 | tail -1)
j power off'
done
printf '\nDemo done: the virtual board, in local mode and through the mesh, direct and relayed.\n'
