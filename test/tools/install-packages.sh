#!/usr/bin/env bash
# Installs the Debian packages the network tests and the lab drive for real: nftables, conntrack,
# iproute2, FRR and BIRD (BGP peers), arping/ndisc6 (neighbour probes), tcpdump, socat; and for
# the lab's kubelet nodes containerd, runc and the CNI plugins (bridge, host-local).
# Only runs apt-get when something is missing, so a second `make test` costs nothing.
set -euo pipefail
need=()
for pair in nft:nftables conntrack:conntrack ip:iproute2 vtysh:frr bird:bird2 arping:arping \
            ndisc6:ndisc6 tcpdump:tcpdump socat:socat ping:iputils-ping \
            containerd:containerd runc:runc /usr/lib/cni/bridge:containernetworking-plugins; do
  what=${pair%%:*}
  if [[ $what == /* ]]; then [ -x "$what" ] || need+=("${pair#*:}"); continue; fi
  command -v "$what" >/dev/null 2>&1 || need+=("${pair#*:}")
done
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "installing ${need[*]}" >&2
$sudo apt-get install -y --no-install-recommends "${need[@]}" >/dev/null ||
  { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; }
# The packages' own daemons must never run in the host's namespace: tests start their own copies
# inside namespaces they create.
for svc in frr bird; do
  $sudo service "$svc" stop >/dev/null 2>&1 || true
done
