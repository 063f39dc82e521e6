package images

import (
	"context"
	"fmt"
)

// CoreDNSRef names the lab's cluster DNS image: CoreDNS built from its Go module with the
// plugins a cluster's Corefile uses (test/tools/build-control-plane.sh, WANT=coredns).
const CoreDNSRef = "fairlead.dev/coredns:v1.15.0"

// CoreDNS builds (or takes from the cache) the image of the coredns binary at bin and returns
// the tarball's path. It runs /coredns; the Corefile comes from the Pod's arguments.
func CoreDNS(ctx context.Context, bin string) (string, error) {
	if err := checkStatic(bin); err != nil {
		return "", err
	}
	return singleBinary(ctx, "coredns", CoreDNSRef, bin, []string{"/coredns"}, nil,
		fmt.Sprintf("fairlead test/images: /coredns (%s)", CoreDNSRef))
}
