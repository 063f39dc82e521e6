package aws

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/fairlead-lb/fairlead/providers/aws/annotations"
)

// Tags on everything Fairlead creates in AWS. The cluster tag keeps two clusters sharing an
// account apart; the service tag is how a restarted controller finds what it made. The
// kubernetes.io/cluster/<name> tag is the convention other Kubernetes tooling on AWS reads.
const (
	TagCluster = "fairlead.dev/cluster"
	TagService = "fairlead.dev/service"
	// TagPool marks Elastic IPs an operator set aside for Fairlead to adopt (value: pool name).
	TagPool = "fairlead.dev/eip-pool"
	// TagClaim is set on an Elastic IP by the Ensure call that allocated or adopted it (a random
	// value per call), so a call can tell its own copies from those of calls that overlapped it.
	TagClaim = "fairlead.dev/claim"
)

func kubernetesClusterTag(cluster string) string { return "kubernetes.io/cluster/" + cluster }

// namePrefix starts every name Fairlead gives an AWS resource.
const namePrefix = "fl-"

// serviceHash is a short, stable name for a Service in a cluster. AWS names are short (32
// characters for load balancers and target groups) and restricted to [a-zA-Z0-9-], so names
// carry a hash and the tags carry the readable key. 48 bits make collisions between the
// Services of one account negligible, and ownership is checked by tag before anything found by
// name is changed or deleted.
func serviceHash(cluster, key string) string {
	sum := sha256.Sum256([]byte(cluster + "\x00" + key))
	return hex.EncodeToString(sum[:6])
}

// loadBalancerName is the NLB's name: deterministic, so a controller that crashed after
// creating it finds it again by name rather than creating a second one.
func loadBalancerName(svcHash string) string { return namePrefix + svcHash }

// securityGroupName is the name of the Service's security group (unique per VPC).
func securityGroupName(svcHash string) string { return namePrefix + svcHash }

// targetGroupPrefix starts the names of all of a Service's target groups, so they can be listed
// without reading every target group's tags.
func targetGroupPrefix(svcHash string) string { return namePrefix + svcHash + "-" }

// targetGroupName names a target group after everything AWS does not let us change on an
// existing one (protocol, port, target type, IP family): a change of those is a new target
// group. (IPv4 groups keep the names they had before IPv6 ones existed.)
func targetGroupName(svcHash string, protocol string, port int32, targetType string, ipv6 bool) string {
	in := fmt.Sprintf("%s/%d/%s", protocol, port, targetType)
	if ipv6 {
		in += "/ipv6"
	}
	sum := sha256.Sum256([]byte(in))
	return targetGroupPrefix(svcHash) + hex.EncodeToString(sum[:4])
}

// tagsMatch reports whether tags (key → value) say the resource is this cluster's and, if key
// is not empty, this Service's.
func tagsMatch(tags map[string]string, cluster, key string) bool {
	if tags[TagCluster] != cluster {
		return false
	}
	return key == "" || tags[TagService] == key
}

// validClusterName: the cluster name goes into tag keys (kubernetes.io/cluster/<name>).
func validClusterName(name string) error {
	if name == "" {
		return fmt.Errorf("aws: the cluster name is empty; it tags everything Fairlead creates")
	}
	if len(name) > 100 || strings.ContainsAny(name, " /\t\n") {
		return fmt.Errorf("aws: cluster name %q: use at most 100 characters, no spaces or slashes", name)
	}
	return nil
}

// LoadBalancerName is the name of the NLB Fairlead creates for the Service key in cluster: what
// an operator looks for in the AWS console.
func LoadBalancerName(cluster, key string) string {
	return loadBalancerName(serviceHash(cluster, key))
}

// ServiceLoadBalancerName is the name of the NLB of the Service key with these annotations:
// the one its load-balancer-name annotation asks for, or Fairlead's.
func ServiceLoadBalancerName(cluster, key string, ann map[string]string) string {
	if set, err := annotations.Parse(ann); err == nil && set.Name != "" {
		return set.Name
	}
	return LoadBalancerName(cluster, key)
}
