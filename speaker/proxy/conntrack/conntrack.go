// Package conntrack deletes stale UDP connection-tracking entries. UDP has no connection to
// close: once a flow is tracked with a DNAT to an endpoint, every later datagram of that flow
// follows the entry, even after the endpoint is gone, until the entry times out. Deleting
// the entry makes the next datagram go through the rules again.
package conntrack

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// Flow selects entries to delete: UDP flows whose original destination is Dst (any address
// when invalid) and DstPort, DNATed to Endpoint (any when invalid) and, when EndpointPort is
// set, to that port (a Service whose targetPort changes keeps its endpoints' addresses).
type Flow struct {
	Dst          netip.Addr
	DstPort      uint16
	Endpoint     netip.Addr
	EndpointPort uint16
}

func (f Flow) args() []string {
	args := []string{"-D", "-p", "udp"}
	family := f.Dst
	if !family.IsValid() {
		family = f.Endpoint
	}
	if family.Is6() {
		args = append(args, "-f", "ipv6")
	}
	if f.Dst.IsValid() {
		args = append(args, "--orig-dst", f.Dst.String())
	}
	args = append(args, "--orig-port-dst", fmt.Sprint(f.DstPort))
	if f.Endpoint.IsValid() {
		args = append(args, "--dst-nat", f.Endpoint.String())
	}
	if f.EndpointPort != 0 {
		args = append(args, "--reply-port-src", fmt.Sprint(f.EndpointPort))
	}
	return args
}

// Delete removes the entries matching flow with the conntrack tool. Finding none is not an
// error.
func Delete(ctx context.Context, flow Flow) error {
	out, err := exec.CommandContext(ctx, "conntrack", flow.args()...).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "0 flow entries have been deleted") {
		return fmt.Errorf("conntrack %s: %w: %s", strings.Join(flow.args(), " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
