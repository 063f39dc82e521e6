package aws

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/fairlead-lb/fairlead/providers"
	"github.com/fairlead-lb/fairlead/providers/aws/annotations"
)

// Subnet role tags, the convention of the AWS cloud provider and load balancer controller.
const (
	tagRoleELB         = "kubernetes.io/role/elb"
	tagRoleInternalELB = "kubernetes.io/role/internal-elb"
)

// subnetChoice is where a load balancer goes.
type subnetChoice struct {
	ids []string // sorted
	// annotated: the Service lists its subnets, so they are exactly these.
	annotated bool
	// mappings give each subnet its Elastic IP or private address; empty when none is asked.
	mappings []elbtypes.SubnetMapping
}

type subnet struct {
	id, zone, vpc string
	cidr          netip.Prefix
}

// subnets returns the subnets a load balancer of the Service goes into: those its annotation
// names, the configured ones, or the VPC's subnets tagged for the scheme's role, the first (by
// ID) of each zone, since a load balancer takes at most one subnet per zone.
func (p *NLB) subnets(ctx context.Context, d *nlbSpec) (subnetChoice, error) {
	var chosen []subnet
	var err error
	switch {
	case len(d.subnets) > 0:
		chosen, err = p.annotatedSubnets(ctx, d.subnets)
	case len(p.opts.Subnets) > 0 && len(d.privateIPs) == 0:
		for _, id := range p.opts.Subnets {
			chosen = append(chosen, subnet{id: id})
		}
	case len(p.opts.Subnets) > 0:
		chosen, err = p.describeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: p.opts.Subnets})
	default:
		chosen, err = p.taggedSubnets(ctx, d.scheme)
	}
	if err != nil {
		return subnetChoice{}, err
	}
	c := subnetChoice{annotated: len(d.subnets) > 0}
	for _, s := range chosen {
		c.ids = append(c.ids, s.id)
	}
	ann := annotations.Prefix
	switch {
	case len(d.allocations) > 0:
		if len(d.allocations) != len(chosen) {
			return c, invalid("annotation %s%s: %d allocations for %d subnets (%s); give one per subnet",
				ann, annotations.EIPAllocations, len(d.allocations), len(chosen), strings.Join(c.ids, ","))
		}
		for i, s := range chosen {
			c.mappings = append(c.mappings, elbtypes.SubnetMapping{SubnetId: aws.String(s.id), AllocationId: aws.String(d.allocations[i])})
		}
	case len(d.privateIPs) > 0:
		if len(d.privateIPs) != len(chosen) {
			return c, invalid("annotation %s%s: %d addresses for %d subnets (%s); give one per subnet",
				ann, annotations.PrivateIPv4Addresses, len(d.privateIPs), len(chosen), strings.Join(c.ids, ","))
		}
		for _, s := range chosen {
			var in []netip.Addr
			for _, ip := range d.privateIPs {
				if s.cidr.Contains(ip) {
					in = append(in, ip)
				}
			}
			if len(in) != 1 {
				return c, invalid("annotation %s%s: subnet %s (%s) needs exactly one of the addresses, has %d",
					ann, annotations.PrivateIPv4Addresses, s.id, s.cidr, len(in))
			}
			c.mappings = append(c.mappings, elbtypes.SubnetMapping{SubnetId: aws.String(s.id), PrivateIPv4Address: aws.String(in[0].String())})
		}
	}
	slices.Sort(c.ids)
	return c, nil
}

// annotatedSubnets resolves the subnets a Service names, by ID or Name tag, in its order.
func (p *NLB) annotatedSubnets(ctx context.Context, refs []string) ([]subnet, error) {
	name := annotations.Prefix + annotations.Subnets
	var out []subnet
	zones := map[string]string{}
	for _, ref := range refs {
		in := &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{{Name: aws.String("vpc-id"), Values: []string{p.opts.VPCID}}}}
		if strings.HasPrefix(ref, "subnet-") {
			in.Filters = append(in.Filters, ec2types.Filter{Name: aws.String("subnet-id"), Values: []string{ref}})
		} else {
			in.Filters = append(in.Filters, ec2types.Filter{Name: aws.String("tag:Name"), Values: []string{ref}})
		}
		found, err := p.describeSubnets(ctx, in)
		if err != nil {
			return nil, err
		}
		switch {
		case len(found) == 0:
			return nil, invalid("annotation %s: no subnet %q in VPC %s", name, ref, p.opts.VPCID)
		case len(found) > 1:
			return nil, invalid("annotation %s: %d subnets of VPC %s are named %q; use their IDs", name, len(found), p.opts.VPCID, ref)
		}
		s := found[0]
		if other, ok := zones[s.zone]; ok {
			return nil, invalid("annotation %s: subnets %s and %s are both in zone %s; a load balancer takes one subnet per zone", name, other, s.id, s.zone)
		}
		zones[s.zone] = s.id
		out = append(out, s)
	}
	return out, nil
}

func (p *NLB) describeSubnets(ctx context.Context, in *ec2.DescribeSubnetsInput) ([]subnet, error) {
	var out []subnet
	pages := ec2.NewDescribeSubnetsPaginator(p.c.EC2, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if errCode(err) == "InvalidSubnetID.NotFound" {
			return nil, invalid("subnets %v: %v", in.SubnetIds, err)
		}
		if err != nil {
			return nil, wrap(err, "listing the subnets of VPC %s", p.opts.VPCID)
		}
		for _, s := range page.Subnets {
			cidr, _ := netip.ParsePrefix(aws.ToString(s.CidrBlock))
			out = append(out, subnet{id: aws.ToString(s.SubnetId), zone: aws.ToString(s.AvailabilityZone), vpc: aws.ToString(s.VpcId), cidr: cidr})
		}
	}
	return out, nil
}

// taggedSubnets: the VPC's subnets tagged for the scheme's role, the first (by ID) of each zone.
func (p *NLB) taggedSubnets(ctx context.Context, scheme string) ([]subnet, error) {
	role := tagRoleELB
	if scheme == schemeInternal {
		role = tagRoleInternalELB
	}
	found, err := p.describeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{
		{Name: aws.String("vpc-id"), Values: []string{p.opts.VPCID}},
		{Name: aws.String("tag-key"), Values: []string{role}},
	}})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(found, func(a, b subnet) int {
		if c := strings.Compare(a.zone, b.zone); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	var out []subnet
	var zone string
	for _, s := range found {
		if s.zone != zone {
			zone = s.zone
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, providers.Errorf(providers.ReasonMisconfigured,
			"no subnet of VPC %s is tagged %s for %s load balancers; tag one per zone or configure the subnets", p.opts.VPCID, role, scheme)
	}
	return out, nil
}
