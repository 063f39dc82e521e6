package aws

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/go-logr/logr"

	"github.com/fairlead-lb/fairlead/providers"
	"github.com/fairlead-lb/fairlead/providers/aws/annotations"
)

type securityGroup struct {
	id, name, key string
	tags          map[string]string
}

// taggedSecurityGroups lists this cluster's security groups (of one Service when key is set).
// EC2, unlike ELBv2, filters by tag on the server.
func (p *NLB) taggedSecurityGroups(ctx context.Context, key string) ([]securityGroup, error) {
	filters := []ec2types.Filter{
		{Name: aws.String("vpc-id"), Values: []string{p.opts.VPCID}},
		{Name: aws.String("tag:" + TagCluster), Values: []string{p.opts.ClusterName}},
	}
	if key != "" {
		filters = append(filters, ec2types.Filter{Name: aws.String("tag:" + TagService), Values: []string{key}})
	}
	var res []securityGroup
	pages := ec2.NewDescribeSecurityGroupsPaginator(p.c.EC2, &ec2.DescribeSecurityGroupsInput{Filters: filters})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return nil, wrap(err, "listing security groups")
		}
		for _, g := range out.SecurityGroups {
			tags := ec2Tags(g.Tags)
			res = append(res, securityGroup{id: aws.ToString(g.GroupId), name: aws.ToString(g.GroupName), key: tags[TagService], tags: tags})
		}
	}
	return res, nil
}

// TagNames, on a Service's security group, lists the names other than Fairlead's own
// (fl-<hash>) its load balancer may have (load-balancer-name), space-separated. The security
// group is created before the load balancer and deleted after it, and ELBv2 cannot list load
// balancers by tag, so this is how a restarted controller finds a load balancer under a name of
// the Service's choosing, and the old one when the name changes.
const TagNames = "fairlead.dev/load-balancer-names"

// ensureSecurityGroup creates or adopts the Service's security group and sets its inbound
// rules to the listener ports from the source ranges. Outbound stays EC2's default (all). It
// returns the group and the load balancer names recorded on it before (TagNames); the wanted
// name is recorded too, before the load balancer is created under it.
func (p *NLB) ensureSecurityGroup(ctx context.Context, d *nlbSpec) (securityGroup, []string, error) {
	g, recorded, err := p.findOrCreateSecurityGroup(ctx, d)
	if err != nil {
		return g, nil, err
	}
	return g, recorded, p.syncIngress(ctx, g.id, d.ingress)
}

// sgTags are the security group's tags with names recorded in TagNames.
func (p *NLB) sgTags(d *nlbSpec, names ...string) map[string]string {
	t := p.wantTags(d)
	var custom []string
	for _, n := range names {
		if n != loadBalancerName(d.hash) && !slices.Contains(custom, n) {
			custom = append(custom, n)
		}
	}
	if len(custom) > 0 {
		slices.Sort(custom)
		t[TagNames] = strings.Join(custom, " ")
	}
	return t
}

func (p *NLB) findOrCreateSecurityGroup(ctx context.Context, d *nlbSpec) (securityGroup, []string, error) {
	name := securityGroupName(d.hash)
	gs, err := p.taggedSecurityGroups(ctx, d.key)
	if err != nil {
		return securityGroup{}, nil, err
	}
	for _, g := range gs {
		if g.name == name {
			recorded := strings.Fields(g.tags[TagNames])
			want := p.sgTags(d, append([]string{d.name}, recorded...)...)
			if err := p.syncEC2Tags(ctx, g.id, g.tags, want); err != nil {
				return g, nil, err
			}
			g.tags = want
			return g, recorded, nil
		}
	}
	tags := p.sgTags(d, d.name)
	out, err := p.c.EC2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{
		GroupName:   aws.String(name),
		Description: aws.String(fmt.Sprintf("Fairlead: NLB of Service %s in cluster %s", d.key, p.opts.ClusterName)),
		VpcId:       aws.String(p.opts.VPCID),
		TagSpecifications: []ec2types.TagSpecification{{
			ResourceType: ec2types.ResourceTypeSecurityGroup,
			Tags:         ec2TagListOf(tags),
		}},
	})
	if errCode(err) == "InvalidGroup.Duplicate" {
		// The name is taken but not by a group tagged for this Service (we looked above).
		return securityGroup{}, nil, providers.Errorf(providers.ReasonConflict,
			"security group %s exists in VPC %s but is not tagged %s=%s; not touching it", name, p.opts.VPCID, TagService, d.key)
	}
	if err != nil {
		return securityGroup{}, nil, wrap(err, "creating security group %s", name)
	}
	logr.FromContextOrDiscard(ctx).Info("created security group", "id", aws.ToString(out.GroupId))
	return securityGroup{id: aws.ToString(out.GroupId), name: name, key: d.key, tags: tags}, nil, nil
}

// syncIngress makes the group's inbound rules exactly want.
func (p *NLB) syncIngress(ctx context.Context, id string, want []ruleSpec) error {
	out, err := p.c.EC2.DescribeSecurityGroupRules(ctx, &ec2.DescribeSecurityGroupRulesInput{
		Filters: []ec2types.Filter{{Name: aws.String("group-id"), Values: []string{id}}},
	})
	if err != nil {
		return wrap(err, "listing the rules of security group %s", id)
	}
	wanted := map[ruleSpec]bool{}
	for _, r := range want {
		wanted[r] = true
	}
	var revoke []string
	for _, r := range out.SecurityGroupRules {
		if aws.ToBool(r.IsEgress) {
			continue
		}
		cidr, err := netip.ParsePrefix(cmp.Or(aws.ToString(r.CidrIpv4), aws.ToString(r.CidrIpv6)))
		have := ruleSpec{protocol: aws.ToString(r.IpProtocol), port: aws.ToInt32(r.FromPort), cidr: cidr}
		if err != nil || aws.ToInt32(r.ToPort) != have.port || !wanted[have] {
			revoke = append(revoke, aws.ToString(r.SecurityGroupRuleId))
			continue
		}
		delete(wanted, have)
	}
	log := logr.FromContextOrDiscard(ctx)
	if len(wanted) > 0 {
		var perms []ec2types.IpPermission
		for _, r := range want {
			if !wanted[r] {
				continue
			}
			perm := ec2types.IpPermission{IpProtocol: aws.String(r.protocol), FromPort: aws.Int32(r.port), ToPort: aws.Int32(r.port)}
			if r.cidr.Addr().Is4() {
				perm.IpRanges = []ec2types.IpRange{{CidrIp: aws.String(r.cidr.String())}}
			} else {
				perm.Ipv6Ranges = []ec2types.Ipv6Range{{CidrIpv6: aws.String(r.cidr.String())}}
			}
			perms = append(perms, perm)
		}
		if _, err := p.c.EC2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{
			GroupId: aws.String(id), IpPermissions: perms,
		}); err != nil && errCode(err) != "InvalidPermission.Duplicate" {
			return wrap(err, "adding %d inbound rules to security group %s", len(perms), id)
		}
		log.Info("added inbound rules", "securityGroup", id, "rules", len(perms))
	}
	if len(revoke) > 0 {
		if _, err := p.c.EC2.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{
			GroupId: aws.String(id), SecurityGroupRuleIds: revoke,
		}); err != nil {
			return wrap(err, "removing %d inbound rules from security group %s", len(revoke), id)
		}
		log.Info("removed inbound rules", "securityGroup", id, "rules", len(revoke))
	}
	return nil
}

func (p *NLB) deleteSecurityGroup(ctx context.Context, key, hash string) error {
	gs, err := p.taggedSecurityGroups(ctx, key)
	if err != nil {
		return err
	}
	for _, g := range gs {
		if err := p.syncNodeRules(ctx, g.id, nil); err != nil {
			return err
		}
		_, err := p.c.EC2.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: aws.String(g.id)})
		// A failure without an API error code (a dropped connection, a cancelled context) is a
		// failure too: the group may still exist.
		switch code := errCode(err); {
		case err == nil:
			logr.FromContextOrDiscard(ctx).Info("deleted security group", "id", g.id)
		case code == "InvalidGroup.NotFound":
		case code == "DependencyViolation":
			// AWS detaches a deleted NLB's network interfaces a few minutes after the delete.
			return wrap(err, "deleting security group %s: still in use by the deleted load balancer's network interfaces; retrying", g.id)
		default:
			return wrap(err, "deleting security group %s", g.id)
		}
	}
	return nil
}

func ec2TagList(cluster, key string) []ec2types.Tag {
	return []ec2types.Tag{
		{Key: aws.String(TagCluster), Value: aws.String(cluster)},
		{Key: aws.String(TagService), Value: aws.String(key)},
		{Key: aws.String(kubernetesClusterTag(cluster)), Value: aws.String("owned")},
	}
}

func ec2Tags(ts []ec2types.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range ts {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

// frontendGroups resolves the security groups the Service brings for its load balancer (IDs or
// Name tags, in the VPC); none: Fairlead's own.
func (p *NLB) frontendGroups(ctx context.Context, d *nlbSpec) ([]string, error) {
	name := annotations.Prefix + annotations.SecurityGroups
	var ids []string
	for _, ref := range d.securityGroups {
		filter := ec2types.Filter{Name: aws.String("group-name"), Values: []string{ref}}
		if strings.HasPrefix(ref, "sg-") {
			filter = ec2types.Filter{Name: aws.String("group-id"), Values: []string{ref}}
		}
		out, err := p.c.EC2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
			{Name: aws.String("vpc-id"), Values: []string{p.opts.VPCID}}, filter,
		}})
		if err != nil {
			return nil, wrap(err, "looking up security group %s", ref)
		}
		switch len(out.SecurityGroups) {
		case 0:
			return nil, invalid("annotation %s: no security group %q in VPC %s", name, ref, p.opts.VPCID)
		case 1:
		default:
			return nil, invalid("annotation %s: %d security groups of VPC %s are named %q; use their IDs", name, len(out.SecurityGroups), p.opts.VPCID, ref)
		}
		if id := aws.ToString(out.SecurityGroups[0].GroupId); !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}
