package aws

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/go-logr/logr"

	"github.com/fairlead-lb/fairlead/providers"
	"github.com/fairlead-lb/fairlead/providers/aws/annotations"
)

type loadBalancer struct {
	arn, name, dnsName, scheme, lbType string
	ipAddressType                      string
	securityGroups                     []string
	subnets                            []string
	tags                               map[string]string
}

// TagSpec records, on a load balancer, a hash of the settings AWS cannot change on an existing
// one (scheme, Elastic IPs, private addresses): a load balancer whose hash differs from the
// Service's is replaced.
const TagSpec = "fairlead.dev/fixed-settings"

func specHash(d *nlbSpec, mappings []elbtypes.SubnetMapping) string {
	h := sha256.New()
	fmt.Fprintf(h, "scheme=%s\n", d.scheme)
	for _, m := range mappings {
		fmt.Fprintf(h, "%s %s %s\n", aws.ToString(m.SubnetId), aws.ToString(m.AllocationId), aws.ToString(m.PrivateIPv4Address))
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func toLoadBalancer(l elbtypes.LoadBalancer, tags map[string]string) *loadBalancer {
	lb := &loadBalancer{
		arn: aws.ToString(l.LoadBalancerArn), name: aws.ToString(l.LoadBalancerName), dnsName: aws.ToString(l.DNSName),
		scheme: string(l.Scheme), lbType: string(l.Type), securityGroups: l.SecurityGroups, tags: tags,
		ipAddressType: string(l.IpAddressType),
	}
	for _, z := range l.AvailabilityZones {
		lb.subnets = append(lb.subnets, aws.ToString(z.SubnetId))
	}
	slices.Sort(lb.subnets)
	return lb
}

// findLoadBalancers returns the Service's load balancers under Fairlead's name for it, the
// name it asks for (want, "" for none) or a name recorded on its security group (a Service has
// one, except after a crash while it was being renamed). One under Fairlead's or the wanted
// name that is not tagged for this Service is a conflict: we never touch it. One under a name
// only recorded is someone else's, not ours to report: the Service may have asked for a
// name that was taken, and then given it up.
func (p *NLB) findLoadBalancers(ctx context.Context, key, hash, want string, recorded []string) ([]*loadBalancer, error) {
	claimed := []string{loadBalancerName(hash)}
	if want != "" && want != claimed[0] {
		claimed = append(claimed, want)
	}
	names := slices.Clone(claimed)
	for _, n := range recorded {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	var res []*loadBalancer
	for _, name := range names {
		// One name per call: AWS answers LoadBalancerNotFound for the whole call if any is missing.
		out, err := p.c.ELBv2.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{Names: []string{name}})
		if errCode(err) == "LoadBalancerNotFound" {
			continue
		}
		if err != nil {
			return nil, wrap(err, "looking up load balancer %s", name)
		}
		for _, l := range out.LoadBalancers {
			tags, err := p.elbTags(ctx, []string{aws.ToString(l.LoadBalancerArn)})
			if err != nil {
				return nil, err
			}
			switch {
			case tagsMatch(tags[aws.ToString(l.LoadBalancerArn)], p.opts.ClusterName, key):
				res = append(res, toLoadBalancer(l, tags[aws.ToString(l.LoadBalancerArn)]))
			case slices.Contains(claimed, name):
				return nil, providers.Errorf(providers.ReasonConflict,
					"load balancer %s exists but is not tagged %s=%s, %s=%s; not touching it", name, TagCluster, p.opts.ClusterName, TagService, key)
			}
		}
	}
	return res, nil
}

// ensureLoadBalancer creates, adopts, updates or replaces the Service's load balancer. What AWS
// changes in place (security group, added subnets, IP address type, attributes, tags) is changed in place; a
// changed scheme, Elastic IPs or private addresses, or subnets the Service no longer lists,
// replace it: the old one is deleted first (its name is the new one's), so nothing is left.
func (p *NLB) ensureLoadBalancer(ctx context.Context, d *nlbSpec, subs subnetChoice, sgs []string, recorded []string) (*loadBalancer, error) {
	log := logr.FromContextOrDiscard(ctx)
	found, err := p.findLoadBalancers(ctx, d.key, d.hash, d.name, recorded)
	if err != nil {
		return nil, err
	}
	var lb *loadBalancer
	for _, l := range found {
		if l.name == d.name {
			lb = l
			continue
		}
		// AWS cannot rename a load balancer: the one under the old name goes.
		log.Info("replacing load balancer: name changed", "from", l.name, "to", d.name)
		if err := p.deleteLoadBalancer(ctx, l); err != nil {
			return nil, err
		}
	}
	fixed := specHash(d, subs.mappings)
	if lb != nil {
		var why string
		switch had := lb.tags[TagSpec]; {
		case lb.scheme != d.scheme:
			why = "scheme changed"
		case lb.lbType != string(elbtypes.LoadBalancerTypeEnumNetwork):
			why = "not a network load balancer"
		case had != fixed && (had != "" || len(subs.mappings) > 0):
			// No hash: created before Fairlead recorded one, without Elastic IPs or addresses.
			why = "Elastic IPs, private addresses or their subnets changed"
		case len(subs.mappings) == 0 && subs.annotated && !subset(lb.subnets, subs.ids):
			why = "subnets removed"
		}
		if why != "" {
			// Its DNS name changes, and clients must follow; the Service's status says so.
			log.Info("replacing load balancer: "+why, "scheme", lb.scheme, "subnets", lb.subnets)
			if err := p.deleteLoadBalancer(ctx, lb); err != nil {
				return nil, err
			}
			lb = nil
		}
	}
	want := p.wantTags(d)
	want[TagSpec] = fixed
	if lb == nil {
		lb, err = p.createLoadBalancer(ctx, d, subs, sgs, want)
		if err != nil {
			return nil, err
		}
	} else {
		if !slices.Equal(sorted(lb.securityGroups), sorted(sgs)) {
			// An NLB created with security groups keeps accepting changes to them.
			if _, err := p.c.ELBv2.SetSecurityGroups(ctx, &elbv2.SetSecurityGroupsInput{
				LoadBalancerArn: aws.String(lb.arn), SecurityGroups: sgs,
			}); err != nil {
				return nil, wrap(err, "setting the security group of load balancer %s", lb.name)
			}
		}
		if len(subs.mappings) == 0 && subset(lb.subnets, subs.ids) && len(subs.ids) > len(lb.subnets) {
			// Zones are added in place. Without the annotation, subnets that stop being
			// chosen (untagged, say) are left: replacing the load balancer for that would
			// change its address under its clients.
			if _, err := p.c.ELBv2.SetSubnets(ctx, &elbv2.SetSubnetsInput{LoadBalancerArn: aws.String(lb.arn), Subnets: subs.ids}); err != nil {
				return nil, wrap(err, "setting the subnets of load balancer %s", lb.name)
			}
			log.Info("set subnets", "subnets", subs.ids, "were", lb.subnets)
		}
		if lb.ipAddressType != d.ipAddressType {
			if _, err := p.c.ELBv2.SetIpAddressType(ctx, &elbv2.SetIpAddressTypeInput{
				LoadBalancerArn: aws.String(lb.arn), IpAddressType: elbtypes.IpAddressType(d.ipAddressType),
			}); err != nil {
				return nil, wrap(err, "setting the IP address type of load balancer %s to %s", lb.name, d.ipAddressType)
			}
			log.Info("set IP address type", "from", lb.ipAddressType, "to", d.ipAddressType)
		}
		if err := p.syncELBTags(ctx, lb.arn, lb.tags, want); err != nil {
			return nil, err
		}
	}
	if err := p.syncLoadBalancerAttributes(ctx, lb, d.attributes); err != nil {
		return nil, err
	}
	return lb, nil
}

func sorted(s []string) []string {
	return slices.Sorted(slices.Values(s))
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func (p *NLB) createLoadBalancer(ctx context.Context, d *nlbSpec, subs subnetChoice, sgs []string, tags map[string]string) (*loadBalancer, error) {
	name := d.name
	in := &elbv2.CreateLoadBalancerInput{
		Name:           aws.String(name),
		Type:           elbtypes.LoadBalancerTypeEnumNetwork,
		Scheme:         elbtypes.LoadBalancerSchemeEnum(d.scheme),
		IpAddressType:  elbtypes.IpAddressType(d.ipAddressType),
		SecurityGroups: sgs, // must be set at creation: an NLB created without one never gets one
		Tags:           tagList(tags),
	}
	if len(subs.mappings) > 0 {
		in.SubnetMappings = subs.mappings
	} else {
		in.Subnets = subs.ids
	}
	out, err := p.c.ELBv2.CreateLoadBalancer(ctx, in)
	if err != nil {
		return nil, wrap(err, "creating load balancer %s", name)
	}
	l := out.LoadBalancers[0]
	logr.FromContextOrDiscard(ctx).Info("created load balancer", "arn", aws.ToString(l.LoadBalancerArn), "scheme", d.scheme)
	return toLoadBalancer(l, tags), nil
}

// syncLoadBalancerAttributes sets the attributes that differ from want.
func (p *NLB) syncLoadBalancerAttributes(ctx context.Context, lb *loadBalancer, want map[string]string) error {
	out, err := p.c.ELBv2.DescribeLoadBalancerAttributes(ctx, &elbv2.DescribeLoadBalancerAttributesInput{LoadBalancerArn: aws.String(lb.arn)})
	if err != nil {
		return wrap(err, "reading the attributes of load balancer %s", lb.name)
	}
	have := map[string]string{}
	for _, a := range out.Attributes {
		have[aws.ToString(a.Key)] = aws.ToString(a.Value)
	}
	defaults := annotations.LBAttributeDefaults()
	var change []elbtypes.LoadBalancerAttribute
	for _, k := range slices.Sorted(maps.Keys(want)) {
		// An attribute AWS does not report is at its default.
		if v, ok := have[k]; (ok && v != want[k]) || (!ok && defaults[k] != want[k]) {
			change = append(change, elbtypes.LoadBalancerAttribute{Key: aws.String(k), Value: aws.String(want[k])})
		}
	}
	if len(change) == 0 {
		return nil
	}
	if _, err := p.c.ELBv2.ModifyLoadBalancerAttributes(ctx, &elbv2.ModifyLoadBalancerAttributesInput{
		LoadBalancerArn: aws.String(lb.arn), Attributes: change,
	}); err != nil {
		return wrap(err, "setting the attributes of load balancer %s", lb.name)
	}
	logr.FromContextOrDiscard(ctx).Info("set load balancer attributes", "attributes", describeAttributes(change))
	return nil
}

func (p *NLB) deleteLoadBalancer(ctx context.Context, lb *loadBalancer) error {
	_, err := p.c.ELBv2.DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: aws.String(lb.arn)})
	if errCode(err) == "OperationNotPermitted" {
		return providers.Errorf(providers.ReasonMisconfigured,
			"load balancer %s has deletion protection on: set deletion_protection.enabled=false in the Service's annotation %s%s (or in AWS) to let it be deleted or replaced: %w",
			lb.name, annotations.Prefix, annotations.LoadBalancerAttributes, err)
	}
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
