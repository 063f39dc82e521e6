package aws

import (
	"context"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/fairlead-lb/fairlead/providers"
)

// Subnet role tags, the convention of the AWS cloud provider and load balancer controller.
const (
	tagRoleELB         = "kubernetes.io/role/elb"
	tagRoleInternalELB = "kubernetes.io/role/internal-elb"
)

// subnets returns the subnets a load balancer of this scheme goes into: the configured ones,
// or the VPC's subnets tagged for the scheme's role, the first (by ID) of each zone, since a
// load balancer takes at most one subnet per zone.
func (p *NLB) subnets(ctx context.Context, scheme string) ([]string, error) {
	if len(p.opts.Subnets) > 0 {
		return p.opts.Subnets, nil
	}
	role := tagRoleELB
	if scheme == schemeInternal {
		role = tagRoleInternalELB
	}
	var found []ec2types.Subnet
	pages := ec2.NewDescribeSubnetsPaginator(p.c.EC2, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{
		{Name: aws.String("vpc-id"), Values: []string{p.opts.VPCID}},
		{Name: aws.String("tag-key"), Values: []string{role}},
	}})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return nil, wrap(err, "listing the subnets of VPC %s", p.opts.VPCID)
		}
		found = append(found, out.Subnets...)
	}
	slices.SortFunc(found, func(a, b ec2types.Subnet) int {
		if c := strings.Compare(aws.ToString(a.AvailabilityZone), aws.ToString(b.AvailabilityZone)); c != 0 {
			return c
		}
		return strings.Compare(aws.ToString(a.SubnetId), aws.ToString(b.SubnetId))
	})
	var ids []string
	var zone string
	for _, s := range found {
		if z := aws.ToString(s.AvailabilityZone); z != zone {
			zone = z
			ids = append(ids, aws.ToString(s.SubnetId))
		}
	}
	if len(ids) == 0 {
		return nil, providers.Errorf(providers.ReasonMisconfigured,
			"no subnet of VPC %s is tagged %s for %s load balancers; tag one per zone or configure the subnets", p.opts.VPCID, role, scheme)
	}
	return ids, nil
}
