package aws

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/go-logr/logr"

	"github.com/fairlead-lb/fairlead/providers"
)

// EIPOptions configure the Elastic IP mode.
type EIPOptions struct {
	// ClusterName tags everything; two clusters in one account must use different ones.
	ClusterName string
	// Pool, when set, is the value of the fairlead.dev/eip-pool tag on Elastic IPs an operator
	// allocated for Fairlead to adopt. Adopted addresses go back to the pool on release.
	Pool string
	// AllocateOnDemand allocates a new Elastic IP when no pool address is free (always, when
	// Pool is empty). Allocated addresses are released to AWS on release.
	AllocateOnDemand bool
	// PublicIPv4Pool allocates from a BYOIP pool (ipv4pool-ec2-...) instead of Amazon's.
	PublicIPv4Pool string
}

// EIP gives each Service one Elastic IP. Which node's interface the address is associated with
// is the speaker's decision (the layer 2 election); Associate is the call it makes on winning.
type EIP struct {
	c    *Clients
	opts EIPOptions
}

var _ providers.Provider = (*EIP)(nil)

// NewEIP returns the Elastic IP provider.
func NewEIP(c *Clients, o EIPOptions) (*EIP, error) {
	if err := validClusterName(o.ClusterName); err != nil {
		return nil, err
	}
	if o.Pool == "" && !o.AllocateOnDemand {
		return nil, fmt.Errorf("aws: Elastic IP mode needs a pool tag to adopt addresses from, or allocation on demand, or both")
	}
	return &EIP{c: c, opts: o}, nil
}

type elasticIP struct {
	allocationID, associationID string
	ip                          netip.Addr
	eni, privateIP              string
	tags                        map[string]string
}

func (a elasticIP) adopted() bool { return a.tags[TagPool] != "" }

func (e *EIP) describe(ctx context.Context, filters ...ec2types.Filter) ([]elasticIP, error) {
	out, err := e.c.EC2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: filters})
	if err != nil {
		return nil, wrap(err, "listing Elastic IPs")
	}
	var res []elasticIP
	for _, a := range out.Addresses {
		ip, err := netip.ParseAddr(aws.ToString(a.PublicIp))
		if err != nil {
			continue
		}
		res = append(res, elasticIP{
			allocationID: aws.ToString(a.AllocationId), associationID: aws.ToString(a.AssociationId),
			ip: ip, eni: aws.ToString(a.NetworkInterfaceId), privateIP: aws.ToString(a.PrivateIpAddress),
			tags: ec2Tags(a.Tags),
		})
	}
	// Oldest first is not available from the API; allocation IDs at least order them stably.
	slices.SortFunc(res, func(a, b elasticIP) int { return strings.Compare(a.allocationID, b.allocationID) })
	return res, nil
}

func tagFilter(key, value string) ec2types.Filter {
	return ec2types.Filter{Name: aws.String("tag:" + key), Values: []string{value}}
}

func (e *EIP) held(ctx context.Context, key string) ([]elasticIP, error) {
	return e.describe(ctx, tagFilter(TagCluster, e.opts.ClusterName), tagFilter(TagService, key))
}

// Ensure implements providers.Provider: the Service keeps the Elastic IP tagged for it, or
// adopts a free one from the pool, or gets a new one.
func (e *EIP) Ensure(ctx context.Context, svc *providers.Service) (providers.Ingress, error) {
	for _, f := range svc.Families {
		if f != "IPv4" {
			return providers.Ingress{}, invalid("Elastic IP mode: IP family %s is not supported (Elastic IPs are IPv4)", f)
		}
	}
	key := svc.Key()
	log := logr.FromContextOrDiscard(ctx).WithValues("service", key)
	ctx = logr.NewContext(ctx, log)
	held, err := e.held(ctx, key)
	if err != nil {
		return providers.Ingress{}, err
	}
	if len(held) > 0 {
		return e.keepOne(ctx, held, svc.StatusIPs, func(elasticIP) bool { return true })
	}
	// The SDK retrying a create whose answer was lost may have allocated twice, and calls for
	// the same Service in other processes may have allocated alongside this one: every copy
	// carries the Service's tags. Every caller keeps the same one (keepFirst), and gives back
	// only its own extra copies: another call may have read the Service's addresses before this
	// call's copy existed and returned its own, the only one it saw, for the Service's status.
	// Such a copy, if it is not the one kept, stays until the next Ensure, which keeps the one
	// the status shows.
	claim := rand.Text()
	a, err := e.acquire(ctx, key, claim)
	if err != nil {
		return providers.Ingress{}, err
	}
	if held, err = e.held(ctx, key); err != nil {
		return providers.Ingress{}, err
	}
	if !slices.ContainsFunc(held, func(h elasticIP) bool { return h.allocationID == a.allocationID }) {
		a.tags = maps.Clone(a.tags)
		if a.tags == nil {
			a.tags = map[string]string{}
		}
		a.tags[TagClaim] = claim
		held = append(held, a) // tags not visible yet (eventual consistency)
	}
	return e.keepOne(ctx, held, svc.StatusIPs, func(h elasticIP) bool { return h.tags[TagClaim] == claim })
}

// keepOne keeps the first of a Service's Elastic IPs by keepFirst and gives back the others
// that are this call's to give.
func (e *EIP) keepOne(ctx context.Context, held []elasticIP, status []netip.Addr, ours func(elasticIP) bool) (providers.Ingress, error) {
	slices.SortFunc(held, keepFirst(status))
	keep := held[0]
	var errs []error
	for _, extra := range held[1:] {
		if !ours(extra) {
			logr.FromContextOrDiscard(ctx).Info("left an overlapping call's Elastic IP to it", "ip", extra.ip, "keeping", keep.ip)
			continue
		}
		errs = append(errs, e.giveBack(ctx, extra))
	}
	if err := errors.Join(errs...); err != nil {
		return providers.Ingress{}, err
	}
	return providers.Ingress{IPs: []netip.Addr{keep.ip}}, nil
}

// keepFirst orders a Service's Elastic IPs, the one to keep first, by what every caller sees
// alike (AWS' records and the Service's status), never by which call allocated which: two
// overlapping Ensures (two processes, or one restarted mid-call) that each kept their own
// would release each other's and leave the Service none. Kept first: the one carrying traffic,
// then the one clients were told, then the lowest allocation ID.
func keepFirst(status []netip.Addr) func(x, y elasticIP) int {
	return func(x, y elasticIP) int {
		if c := boolCmp(x.associationID != "", y.associationID != ""); c != 0 {
			return c
		}
		if c := boolCmp(slices.Contains(status, x.ip), slices.Contains(status, y.ip)); c != 0 {
			return c
		}
		return strings.Compare(x.allocationID, y.allocationID)
	}
}

// boolCmp orders true before false.
func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	}
	return 1
}

func (e *EIP) acquire(ctx context.Context, key, claim string) (elasticIP, error) {
	tags := append(ec2TagList(e.opts.ClusterName, key), ec2types.Tag{Key: aws.String(TagClaim), Value: aws.String(claim)})
	log := logr.FromContextOrDiscard(ctx)
	if e.opts.Pool != "" {
		pool, err := e.describe(ctx, tagFilter(TagPool, e.opts.Pool))
		if err != nil {
			return elasticIP{}, err
		}
		for _, a := range pool {
			if a.tags[TagService] != "" || a.associationID != "" {
				continue // someone's
			}
			if _, err := e.c.EC2.CreateTags(ctx, &ec2.CreateTagsInput{
				Resources: []string{a.allocationID}, Tags: tags,
			}); err != nil {
				return elasticIP{}, wrap(err, "claiming Elastic IP %s from pool %s", a.ip, e.opts.Pool)
			}
			log.Info("adopted Elastic IP", "ip", a.ip, "pool", e.opts.Pool)
			return a, nil
		}
		if !e.opts.AllocateOnDemand {
			return elasticIP{}, providers.Errorf(providers.ReasonExhausted, "no free Elastic IP tagged %s=%s", TagPool, e.opts.Pool)
		}
	}
	in := &ec2.AllocateAddressInput{
		Domain: ec2types.DomainTypeVpc,
		TagSpecifications: []ec2types.TagSpecification{{
			ResourceType: ec2types.ResourceTypeElasticIp, Tags: tags,
		}},
	}
	if e.opts.PublicIPv4Pool != "" {
		in.PublicIpv4Pool = aws.String(e.opts.PublicIPv4Pool)
	}
	out, err := e.c.EC2.AllocateAddress(ctx, in)
	if err != nil {
		return elasticIP{}, wrap(err, "allocating an Elastic IP")
	}
	ip, err := netip.ParseAddr(aws.ToString(out.PublicIp))
	if err != nil {
		return elasticIP{}, providers.Errorf(providers.ReasonCloudError, "AllocateAddress answered a bad address %q", aws.ToString(out.PublicIp))
	}
	log.Info("allocated Elastic IP", "ip", ip, "allocationID", aws.ToString(out.AllocationId))
	return elasticIP{allocationID: aws.ToString(out.AllocationId), ip: ip}, nil
}

// giveBack disassociates an address and returns it: to its pool if adopted, else to AWS.
func (e *EIP) giveBack(ctx context.Context, a elasticIP) error {
	log := logr.FromContextOrDiscard(ctx)
	if a.associationID != "" {
		if _, err := e.c.EC2.DisassociateAddress(ctx, &ec2.DisassociateAddressInput{AssociationId: aws.String(a.associationID)}); err != nil &&
			errCode(err) != "InvalidAssociationID.NotFound" {
			return wrap(err, "disassociating Elastic IP %s", a.ip)
		}
	}
	if a.adopted() {
		_, err := e.c.EC2.DeleteTags(ctx, &ec2.DeleteTagsInput{
			Resources: []string{a.allocationID},
			Tags: []ec2types.Tag{{Key: aws.String(TagService)}, {Key: aws.String(TagCluster)}, {Key: aws.String(TagClaim)},
				{Key: aws.String(kubernetesClusterTag(e.opts.ClusterName))}},
		})
		if err != nil {
			return wrap(err, "returning Elastic IP %s to pool %s", a.ip, a.tags[TagPool])
		}
		log.Info("returned Elastic IP to its pool", "ip", a.ip, "pool", a.tags[TagPool])
		return nil
	}
	_, err := e.c.EC2.ReleaseAddress(ctx, &ec2.ReleaseAddressInput{AllocationId: aws.String(a.allocationID)})
	if err != nil && errCode(err) != "InvalidAllocationID.NotFound" {
		return wrap(err, "releasing Elastic IP %s", a.ip)
	}
	log.Info("released Elastic IP", "ip", a.ip, "allocationID", a.allocationID)
	return nil
}

// Release implements providers.Provider.
func (e *EIP) Release(ctx context.Context, key string) error {
	ctx = logr.NewContext(ctx, logr.FromContextOrDiscard(ctx).WithValues("service", key))
	held, err := e.held(ctx, key)
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range held {
		errs = append(errs, e.giveBack(ctx, a))
	}
	return errors.Join(errs...)
}

// Owned implements providers.Provider.
func (e *EIP) Owned(ctx context.Context) ([]string, error) {
	held, err := e.Held(ctx)
	if err != nil {
		return nil, err
	}
	keys := slices.Collect(maps.Values(held))
	slices.Sort(keys)
	return slices.Compact(keys), nil
}
