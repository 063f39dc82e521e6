package aws

import (
	"context"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/go-logr/logr"
)

// nodePort is a port the NLB must reach on the targets (traffic or health checks).
type nodePort struct {
	protocol string // tcp or udp
	port     int32
}

// nodePorts lists what the NLB sends to its targets: each target port, and numeric health
// check ports.
func (d *nlbSpec) nodePorts() []nodePort {
	seen := map[nodePort]bool{}
	var out []nodePort
	add := func(p nodePort) {
		if p.port != 0 && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, l := range d.listeners {
		protos := ipProtocols(l.group.protocol)
		ports := []int32{l.group.port}
		for _, t := range l.group.targets {
			ports = append(ports, t.port)
		}
		for _, proto := range protos {
			for _, port := range ports {
				add(nodePort{protocol: proto, port: port})
			}
		}
		if n, err := strconv.Atoi(l.group.health.port); err == nil {
			add(nodePort{protocol: "tcp", port: int32(n)})
		}
	}
	return out
}

// syncNodeRules lets the load balancer's security group reach the target ports through the
// nodes' security group (when one is configured): an NLB with a security group is subject to
// its targets' security groups like any other client. The rules reference the load balancer's
// group, which is how they are recognised as this Service's; want nil removes them all, which
// must happen before that group can be deleted (AWS refuses to delete a referenced group).
func (p *NLB) syncNodeRules(ctx context.Context, lbGroup string, want []nodePort) error {
	node := p.opts.NodeSecurityGroupID
	if node == "" {
		return nil
	}
	out, err := p.c.EC2.DescribeSecurityGroupRules(ctx, &ec2.DescribeSecurityGroupRulesInput{
		Filters: []ec2types.Filter{{Name: aws.String("group-id"), Values: []string{node}}},
	})
	if err != nil {
		return wrap(err, "listing the rules of the nodes' security group %s", node)
	}
	wanted := map[nodePort]bool{}
	for _, np := range want {
		wanted[np] = true
	}
	var revoke []string
	for _, r := range out.SecurityGroupRules {
		if aws.ToBool(r.IsEgress) || r.ReferencedGroupInfo == nil || aws.ToString(r.ReferencedGroupInfo.GroupId) != lbGroup {
			continue
		}
		have := nodePort{protocol: aws.ToString(r.IpProtocol), port: aws.ToInt32(r.FromPort)}
		if aws.ToInt32(r.ToPort) != have.port || !wanted[have] {
			revoke = append(revoke, aws.ToString(r.SecurityGroupRuleId))
			continue
		}
		delete(wanted, have)
	}
	log := logr.FromContextOrDiscard(ctx)
	var perms []ec2types.IpPermission
	for _, np := range want {
		if wanted[np] {
			perms = append(perms, ec2types.IpPermission{
				IpProtocol: aws.String(np.protocol), FromPort: aws.Int32(np.port), ToPort: aws.Int32(np.port),
				UserIdGroupPairs: []ec2types.UserIdGroupPair{{GroupId: aws.String(lbGroup)}},
			})
		}
	}
	if len(perms) > 0 {
		if _, err := p.c.EC2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{
			GroupId: aws.String(node), IpPermissions: perms,
		}); err != nil && errCode(err) != "InvalidPermission.Duplicate" {
			return wrap(err, "letting load balancer group %s reach %d ports in the nodes' security group %s", lbGroup, len(perms), node)
		}
		log.Info("added node rules", "securityGroup", node, "from", lbGroup, "rules", len(perms))
	}
	if len(revoke) > 0 {
		if _, err := p.c.EC2.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{
			GroupId: aws.String(node), SecurityGroupRuleIds: revoke,
		}); err != nil && errCode(err) != "InvalidPermission.NotFound" {
			return wrap(err, "removing %d rules for load balancer group %s from the nodes' security group %s", len(revoke), lbGroup, node)
		}
		log.Info("removed node rules", "securityGroup", node, "from", lbGroup, "rules", len(revoke))
	}
	return nil
}
