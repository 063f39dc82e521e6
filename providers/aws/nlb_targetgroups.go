package aws

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/go-logr/logr"

	"github.com/fairlead-lb/fairlead/providers/aws/annotations"
)

// Health check timing: NLBs accept intervals of 5–300 s and thresholds of 2–10; 10 s and 2
// take a failed node out in about 20 s without flapping on one lost probe.
const (
	healthInterval  = 10
	healthThreshold = 2
)

type targetGroup struct {
	arn, name string
	health    healthSpec
	tags      map[string]string
}

func arnsOf(gs []targetGroup) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.arn
	}
	return out
}

// allTargetGroups lists the region's target groups whose name starts with prefix. The API
// cannot filter by tag or prefix; one page holds 400.
func (p *NLB) allTargetGroups(ctx context.Context, prefix string) ([]targetGroup, error) {
	var res []targetGroup
	pages := elbv2.NewDescribeTargetGroupsPaginator(p.c.ELBv2, &elbv2.DescribeTargetGroupsInput{PageSize: aws.Int32(400)})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return nil, wrap(err, "listing target groups")
		}
		for _, g := range out.TargetGroups {
			if !strings.HasPrefix(aws.ToString(g.TargetGroupName), prefix) {
				continue
			}
			h := healthSpec{
				protocol: string(g.HealthCheckProtocol), port: aws.ToString(g.HealthCheckPort),
				path: aws.ToString(g.HealthCheckPath), interval: aws.ToInt32(g.HealthCheckIntervalSeconds),
				timeout: aws.ToInt32(g.HealthCheckTimeoutSeconds), healthy: aws.ToInt32(g.HealthyThresholdCount),
				unhealthy: aws.ToInt32(g.UnhealthyThresholdCount),
			}
			if g.Matcher != nil {
				h.codes = aws.ToString(g.Matcher.HttpCode)
			}
			res = append(res, targetGroup{arn: aws.ToString(g.TargetGroupArn), name: aws.ToString(g.TargetGroupName), health: h})
		}
	}
	return res, nil
}

// ownedTargetGroups returns the Service's target groups, whether a listener uses them or not
// (a crash between creating a group and its listener leaves it unattached): found by name
// prefix, confirmed by tag.
func (p *NLB) ownedTargetGroups(ctx context.Context, key, hash string) ([]targetGroup, error) {
	gs, err := p.allTargetGroups(ctx, targetGroupPrefix(hash))
	if err != nil {
		return nil, err
	}
	tags, err := p.elbTags(ctx, arnsOf(gs))
	if err != nil {
		return nil, err
	}
	var res []targetGroup
	for _, g := range gs {
		if tagsMatch(tags[g.arn], p.opts.ClusterName, key) {
			g.tags = tags[g.arn]
			res = append(res, g)
		}
	}
	return res, nil
}

// ensureTargetGroups creates or adopts a target group per listener, with its health check,
// attributes, tags and targets. It returns the groups by name.
func (p *NLB) ensureTargetGroups(ctx context.Context, d *nlbSpec) (map[string]targetGroup, error) {
	existing, err := p.ownedTargetGroups(ctx, d.key, d.hash)
	if err != nil {
		return nil, err
	}
	have := map[string]targetGroup{}
	for _, g := range existing {
		have[g.name] = g
	}
	res := map[string]targetGroup{}
	for _, l := range d.listeners {
		spec := l.group
		g, ok := have[spec.name]
		if !ok {
			if g, err = p.createTargetGroup(ctx, d, spec); err != nil {
				return nil, err
			}
		} else {
			if !sameHealth(g.health, spec.health) {
				if err := p.setHealthCheck(ctx, g, spec.health); err != nil {
					return nil, err
				}
			}
			if err := p.syncELBTags(ctx, g.arn, g.tags, p.wantTags(d)); err != nil {
				return nil, err
			}
		}
		if err := p.syncTargetGroupAttributes(ctx, g, spec.attributes); err != nil {
			return nil, err
		}
		if err := p.syncTargets(ctx, g, spec.targets); err != nil {
			return nil, err
		}
		res[spec.name] = g
	}
	return res, nil
}

// sameHealth compares a target group's health check with the wanted one. A timeout left to
// AWS' default is not compared, nor are success codes AWS does not report (moto 5.2.1 keeps no
// matcher for a TCP target group's HTTP check set by ModifyTargetGroup; AWS always reports it).
func sameHealth(have, want healthSpec) bool {
	if want.timeout == 0 {
		have.timeout = 0
	}
	if have.codes == "" || want.protocol == "TCP" {
		have.codes = want.codes
	}
	if want.path == "" {
		have.path = ""
	}
	return have == want
}

func (p *NLB) createTargetGroup(ctx context.Context, d *nlbSpec, spec targetGroupSpec) (targetGroup, error) {
	in := &elbv2.CreateTargetGroupInput{
		Name:          aws.String(spec.name),
		Protocol:      elbtypes.ProtocolEnum(spec.protocol),
		Port:          aws.Int32(spec.port),
		VpcId:         aws.String(p.opts.VPCID),
		TargetType:    elbtypes.TargetTypeEnum(d.targetType),
		IpAddressType: elbtypes.TargetGroupIpAddressTypeEnumIpv4,
		Tags:          tagList(p.wantTags(d)),
	}
	if spec.ipv6 {
		in.IpAddressType = elbtypes.TargetGroupIpAddressTypeEnumIpv6
	}
	setHealth(spec.health, &in.HealthCheckProtocol, &in.HealthCheckPort, &in.HealthCheckPath, &in.HealthCheckIntervalSeconds,
		&in.HealthCheckTimeoutSeconds, &in.HealthyThresholdCount, &in.UnhealthyThresholdCount, &in.Matcher)
	in.HealthCheckEnabled = aws.Bool(true)
	out, err := p.c.ELBv2.CreateTargetGroup(ctx, in)
	if errCode(err) == "DuplicateTargetGroupName" {
		// Created concurrently, or a retried create whose first attempt landed: adopt it if
		// it is ours.
		gs, lerr := p.ownedTargetGroups(ctx, d.key, d.hash)
		if lerr != nil {
			return targetGroup{}, lerr
		}
		for _, g := range gs {
			if g.name == spec.name {
				return g, p.setHealthCheck(ctx, g, spec.health)
			}
		}
	}
	if err != nil {
		return targetGroup{}, wrap(err, "creating target group %s", spec.name)
	}
	g := out.TargetGroups[0]
	logr.FromContextOrDiscard(ctx).Info("created target group", "arn", aws.ToString(g.TargetGroupArn),
		"protocol", spec.protocol, "port", spec.port)
	return targetGroup{arn: aws.ToString(g.TargetGroupArn), name: spec.name, health: spec.health}, nil
}

// setHealth fills the health check fields of a create or modify request.
func setHealth(h healthSpec, proto *elbtypes.ProtocolEnum, port, path **string, interval, timeout, healthy, unhealthy **int32, matcher **elbtypes.Matcher) {
	*proto = elbtypes.ProtocolEnum(h.protocol)
	*port = aws.String(h.port)
	if h.path != "" {
		*path = aws.String(h.path)
	}
	if h.codes != "" {
		*matcher = &elbtypes.Matcher{HttpCode: aws.String(h.codes)}
	}
	*interval = aws.Int32(h.interval)
	if h.timeout != 0 {
		*timeout = aws.Int32(h.timeout)
	}
	*healthy = aws.Int32(h.healthy)
	*unhealthy = aws.Int32(h.unhealthy)
}

func (p *NLB) setHealthCheck(ctx context.Context, g targetGroup, h healthSpec) error {
	in := &elbv2.ModifyTargetGroupInput{TargetGroupArn: aws.String(g.arn), HealthCheckEnabled: aws.Bool(true)}
	setHealth(h, &in.HealthCheckProtocol, &in.HealthCheckPort, &in.HealthCheckPath, &in.HealthCheckIntervalSeconds,
		&in.HealthCheckTimeoutSeconds, &in.HealthyThresholdCount, &in.UnhealthyThresholdCount, &in.Matcher)
	if _, err := p.c.ELBv2.ModifyTargetGroup(ctx, in); err != nil {
		return wrap(err, "setting the health check of target group %s", g.name)
	}
	logr.FromContextOrDiscard(ctx).Info("set health check", "targetGroup", g.name, "protocol", h.protocol, "port", h.port, "path", h.path)
	return nil
}

// syncTargetGroupAttributes sets the attributes that differ from want.
func (p *NLB) syncTargetGroupAttributes(ctx context.Context, g targetGroup, want map[string]string) error {
	out, err := p.c.ELBv2.DescribeTargetGroupAttributes(ctx, &elbv2.DescribeTargetGroupAttributesInput{TargetGroupArn: aws.String(g.arn)})
	if err != nil {
		return wrap(err, "reading the attributes of target group %s", g.name)
	}
	have := map[string]string{}
	for _, a := range out.Attributes {
		have[aws.ToString(a.Key)] = aws.ToString(a.Value)
	}
	var change []elbtypes.TargetGroupAttribute
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if v, ok := have[k]; (ok && v != want[k]) || (!ok && !isDefaultTG(k, want[k])) {
			change = append(change, elbtypes.TargetGroupAttribute{Key: aws.String(k), Value: aws.String(want[k])})
		}
	}
	if len(change) == 0 {
		return nil
	}
	if _, err := p.c.ELBv2.ModifyTargetGroupAttributes(ctx, &elbv2.ModifyTargetGroupAttributesInput{
		TargetGroupArn: aws.String(g.arn), Attributes: change,
	}); err != nil {
		return wrap(err, "setting the attributes of target group %s", g.name)
	}
	logr.FromContextOrDiscard(ctx).Info("set target group attributes", "targetGroup", g.name, "attributes", describeAttributes(change))
	return nil
}

// isDefaultTG: an attribute AWS does not report is at its default.
func isDefaultTG(k, v string) bool {
	d, ok := annotations.TGAttributeDefaults()[k]
	return ok && d == v
}

func describeAttributes[T elbtypes.TargetGroupAttribute | elbtypes.LoadBalancerAttribute](as []T) string {
	var s []string
	for _, a := range as {
		switch a := any(a).(type) {
		case elbtypes.TargetGroupAttribute:
			s = append(s, aws.ToString(a.Key)+"="+aws.ToString(a.Value))
		case elbtypes.LoadBalancerAttribute:
			s = append(s, aws.ToString(a.Key)+"="+aws.ToString(a.Value))
		}
	}
	return strings.Join(s, ",")
}

// syncTargets registers missing targets and deregisters those that left.
func (p *NLB) syncTargets(ctx context.Context, g targetGroup, want []target) error {
	out, err := p.c.ELBv2.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(g.arn)})
	if err != nil {
		return wrap(err, "listing the targets of target group %s", g.name)
	}
	have := map[target]bool{}
	for _, th := range out.TargetHealthDescriptions {
		if th.TargetHealth != nil && th.TargetHealth.State == elbtypes.TargetHealthStateEnumDraining {
			continue // already leaving
		}
		have[target{id: aws.ToString(th.Target.Id), port: aws.ToInt32(th.Target.Port)}] = true
	}
	var add, remove []elbtypes.TargetDescription
	wanted := map[target]bool{}
	for _, t := range want {
		wanted[t] = true
		if !have[t] {
			add = append(add, elbtypes.TargetDescription{Id: aws.String(t.id), Port: aws.Int32(t.port)})
		}
	}
	for t := range have {
		if !wanted[t] {
			remove = append(remove, elbtypes.TargetDescription{Id: aws.String(t.id), Port: aws.Int32(t.port)})
		}
	}
	log := logr.FromContextOrDiscard(ctx)
	if len(add) > 0 {
		if _, err := p.c.ELBv2.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: aws.String(g.arn), Targets: add}); err != nil {
			return wrap(err, "registering %d targets in target group %s", len(add), g.name)
		}
		log.Info("registered targets", "targetGroup", g.name, "targets", describeTargets(add))
	}
	if len(remove) > 0 {
		if _, err := p.c.ELBv2.DeregisterTargets(ctx, &elbv2.DeregisterTargetsInput{TargetGroupArn: aws.String(g.arn), Targets: remove}); err != nil {
			return wrap(err, "deregistering %d targets from target group %s", len(remove), g.name)
		}
		log.Info("deregistered targets", "targetGroup", g.name, "targets", describeTargets(remove))
	}
	return nil
}

func describeTargets(ts []elbtypes.TargetDescription) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = aws.ToString(t.Id) + ":" + strconv.Itoa(int(aws.ToInt32(t.Port)))
	}
	return strings.Join(s, ",")
}

// deleteStaleTargetGroups deletes the Service's target groups no listener needs any more.
func (p *NLB) deleteStaleTargetGroups(ctx context.Context, d *nlbSpec, keep map[string]targetGroup) error {
	gs, err := p.ownedTargetGroups(ctx, d.key, d.hash)
	if err != nil {
		return err
	}
	for _, g := range gs {
		if _, ok := keep[g.name]; !ok {
			if err := p.deleteTargetGroup(ctx, g); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *NLB) deleteTargetGroup(ctx context.Context, g targetGroup) error {
	_, err := p.c.ELBv2.DeleteTargetGroup(ctx, &elbv2.DeleteTargetGroupInput{TargetGroupArn: aws.String(g.arn)})
	if err != nil && errCode(err) != "TargetGroupNotFound" {
		// ResourceInUse right after its load balancer or listener went away: retried later.
		return wrap(err, "deleting target group %s", g.name)
	}
	logr.FromContextOrDiscard(ctx).Info("deleted target group", "arn", g.arn)
	return nil
}
