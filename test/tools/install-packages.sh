#!/usr/bin/env bash
# Installs the Debian packages the network tests and the lab drive for real: nftables, conntrack,
# iproute2, FRR and BIRD (BGP peers), arping/ndisc6 (neighbour probes), tcpdump, socat;
# Prometheus and its promtool (the chart's alert rules are unit tested with `promtool test rules`;
# the lab runs Prometheus with them);
# containerd and runc (the lab's nodes and test/images run containers), the CNI plugins (bridge,
# host-local: the lab's Pod network), debootstrap (the base of the agnhost image).
# Only runs apt-get when something is missing, so a second `make test` costs nothing.
set -euo pipefail
need=()
for pair in nft:nftables conntrack:conntrack ip:iproute2 vtysh:frr bird:bird2 arping:arping \
            ndisc6:ndisc6 tcpdump:tcpdump socat:socat ping:iputils-ping \
            promtool:prometheus /usr/bin/prometheus:prometheus \
            containerd:containerd ctr:containerd runc:runc debootstrap:debootstrap \
            /usr/lib/cni/bridge:containernetworking-plugins; do
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
# inside namespaces they create. Only the ones installed just now are stopped: a containerd that
# was there before may be serving the host's Docker.
for pair in frr:frr bird:bird2 prometheus:prometheus containerd:containerd; do
  [[ " ${need[*]} " == *" ${pair#*:} "* ]] && { $sudo service "${pair%%:*}" stop >/dev/null 2>&1 || true; }
done
