package aws

import (
	"context"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/go-logr/logr"

	"github.com/fairlead-lb/fairlead/providers"
)

type loadBalancer struct {
	arn, name, dnsName, scheme, lbType string
	securityGroups                     []string
}

// findLoadBalancer returns the Service's load balancer, or nil. One with our name that is not
// tagged for this Service is a conflict: we never touch it.
func (p *NLB) findLoadBalancer(ctx context.Context, key, hash string) (*loadBalancer, error) {
	name := loadBalancerName(hash)
	out, err := p.c.ELBv2.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{Names: []string{name}})
	if errCode(err) == "LoadBalancerNotFound" {
		return nil, nil
	}
	if err != nil {
		return nil, wrap(err, "looking up load balancer %s", name)
	}
	if len(out.LoadBalancers) == 0 {
		return nil, nil
	}
	l := out.LoadBalancers[0]
	tags, err := p.elbTags(ctx, []string{aws.ToString(l.LoadBalancerArn)})
	if err != nil {
		return nil, err
	}
	if !tagsMatch(tags[aws.ToString(l.LoadBalancerArn)], p.opts.ClusterName, key) {
		return nil, providers.Errorf(providers.ReasonConflict,
			"load balancer %s exists but is not tagged %s=%s, %s=%s; not touching it", name, TagCluster, p.opts.ClusterName, TagService, key)
	}
	return &loadBalancer{
		arn: aws.ToString(l.LoadBalancerArn), name: name, dnsName: aws.ToString(l.DNSName),
		scheme: string(l.Scheme), lbType: string(l.Type), securityGroups: l.SecurityGroups,
	}, nil
}

func (p *NLB) ensureLoadBalancer(ctx context.Context, d *nlbSpec, subnets []string, sg string) (*loadBalancer, error) {
	log := logr.FromContextOrDiscard(ctx)
	lb, err := p.findLoadBalancer(ctx, d.key, d.hash)
	if err != nil {
		return nil, err
	}
	if lb != nil && (lb.scheme != d.scheme || lb.lbType != string(elbtypes.LoadBalancerTypeEnumNetwork)) {
		// AWS cannot change a load balancer's scheme: replace it. Its DNS name changes, and
		// clients must follow; the Service's status says so.
		log.Info("replacing load balancer: scheme changed", "from", lb.scheme, "to", d.scheme)
		if err := p.deleteLoadBalancer(ctx, lb); err != nil {
			return nil, err
		}
		lb = nil
	}
	if lb == nil {
		return p.createLoadBalancer(ctx, d, subnets, sg)
	}
	if !slices.Equal(lb.securityGroups, []string{sg}) {
		// Only possible if the security group was replaced; an NLB created with security groups
		// keeps accepting changes to them.
		if _, err := p.c.ELBv2.SetSecurityGroups(ctx, &elbv2.SetSecurityGroupsInput{
			LoadBalancerArn: aws.String(lb.arn), SecurityGroups: []string{sg},
		}); err != nil {
			return nil, wrap(err, "setting the security group of load balancer %s", lb.name)
		}
	}
	return lb, nil
}

func (p *NLB) createLoadBalancer(ctx context.Context, d *nlbSpec, subnets []string, sg string) (*loadBalancer, error) {
	name := loadBalancerName(d.hash)
	out, err := p.c.ELBv2.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{
		Name:           aws.String(name),
		Type:           elbtypes.LoadBalancerTypeEnumNetwork,
		Scheme:         elbtypes.LoadBalancerSchemeEnum(d.scheme),
		IpAddressType:  elbtypes.IpAddressTypeIpv4,
		Subnets:        subnets,
		SecurityGroups: []string{sg}, // must be set at creation: an NLB created without one never gets one
		Tags:           p.elbTagList(d.key),
	})
	if err != nil {
		return nil, wrap(err, "creating load balancer %s", name)
	}
	l := out.LoadBalancers[0]
	logr.FromContextOrDiscard(ctx).Info("created load balancer", "arn", aws.ToString(l.LoadBalancerArn), "scheme", d.scheme)
	return &loadBalancer{
		arn: aws.ToString(l.LoadBalancerArn), name: name, dnsName: aws.ToString(l.DNSName),
		scheme: string(l.Scheme), lbType: string(l.Type), securityGroups: l.SecurityGroups,
	}, nil
}

func (p *NLB) deleteLoadBalancer(ctx context.Context, lb *loadBalancer) error {
	_, err := p.c.ELBv2.DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: aws.String(lb.arn)})
	if err != nil && errCode(err) != "LoadBalancerNotFound" {
		return wrap(err, "deleting load balancer %s", lb.name)
	}
	logr.FromContextOrDiscard(ctx).Info("deleted load balancer", "arn", lb.arn)
	return nil
}

// taggedLoadBalancers returns the keys of the Services that have a load balancer of this
// cluster. ELBv2 cannot filter by tag: list our names, then read their tags.
func (p *NLB) taggedLoadBalancers(ctx context.Context) ([]string, error) {
	var arns []string
	pages := elbv2.NewDescribeLoadBalancersPaginator(p.c.ELBv2, &elbv2.DescribeLoadBalancersInput{PageSize: aws.Int32(400)})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return nil, wrap(err, "listing load balancers")
		}
		for _, l := range out.LoadBalancers {
			if strings.HasPrefix(aws.ToString(l.LoadBalancerName), namePrefix) {
				arns = append(arns, aws.ToString(l.LoadBalancerArn))
			}
		}
	}
	tags, err := p.elbTags(ctx, arns)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, t := range tags {
		if tagsMatch(t, p.opts.ClusterName, "") && t[TagService] != "" {
			keys = append(keys, t[TagService])
		}
	}
	return keys, nil
}

// elbTags reads the tags of load balancers and target groups, 20 at a time (the API's limit).
func (p *NLB) elbTags(ctx context.Context, arns []string) (map[string]map[string]string, error) {
	res := map[string]map[string]string{}
	for chunk := range slices.Chunk(arns, 20) {
		out, err := p.c.ELBv2.DescribeTags(ctx, &elbv2.DescribeTagsInput{ResourceArns: chunk})
		if err != nil {
			return nil, wrap(err, "reading tags")
		}
		for _, td := range out.TagDescriptions {
			m := map[string]string{}
			for _, t := range td.Tags {
				m[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
			res[aws.ToString(td.ResourceArn)] = m
		}
	}
	return res, nil
}

func (p *NLB) elbTagList(key string) []elbtypes.Tag {
	return []elbtypes.Tag{
		{Key: aws.String(TagCluster), Value: aws.String(p.opts.ClusterName)},
		{Key: aws.String(TagService), Value: aws.String(key)},
		{Key: aws.String(kubernetesClusterTag(p.opts.ClusterName)), Value: aws.String("owned")},
	}
}
