package aws

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/go-logr/logr"
)

// ensureListeners gives the load balancer exactly one listener per Service port, forwarding to
// that port's target group. A listener whose protocol or group changed is modified in place, so
// the port keeps accepting connections during the change.
func (p *NLB) ensureListeners(ctx context.Context, d *nlbSpec, lbARN string, groups map[string]targetGroup) error {
	log := logr.FromContextOrDiscard(ctx)
	// AWS keeps one listener per port; more than one is only possible in emulators, but costs
	// nothing to repair: the extras are deleted below.
	have := map[int32][]elbtypes.Listener{}
	pages := elbv2.NewDescribeListenersPaginator(p.c.ELBv2, &elbv2.DescribeListenersInput{LoadBalancerArn: aws.String(lbARN)})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return wrap(err, "listing the listeners of load balancer %s", loadBalancerName(d.hash))
		}
		for _, l := range out.Listeners {
			have[aws.ToInt32(l.Port)] = append(have[aws.ToInt32(l.Port)], l)
		}
	}
	for _, want := range d.listeners {
		tg := groups[want.group.name].arn
		actions := []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: aws.String(tg)}}
		ls := have[want.port]
		var l elbtypes.Listener
		if len(ls) > 0 {
			l = ls[0]
			have[want.port] = ls[1:]
		}
		switch {
		case len(ls) == 0:
			if _, err := p.c.ELBv2.CreateListener(ctx, &elbv2.CreateListenerInput{
				LoadBalancerArn: aws.String(lbARN),
				Port:            aws.Int32(want.port),
				Protocol:        elbtypes.ProtocolEnum(want.protocol),
				DefaultActions:  actions,
				Tags:            p.elbTagList(d.key),
			}); err != nil {
				return wrap(err, "creating listener %s/%d", want.protocol, want.port)
			}
			log.Info("created listener", "port", want.port, "protocol", want.protocol, "targetGroup", want.group.name)
		case string(l.Protocol) != want.protocol || forwardTarget(l) != tg:
			if _, err := p.c.ELBv2.ModifyListener(ctx, &elbv2.ModifyListenerInput{
				ListenerArn:    l.ListenerArn,
				Port:           aws.Int32(want.port),
				Protocol:       elbtypes.ProtocolEnum(want.protocol),
				DefaultActions: actions,
			}); err != nil {
				return wrap(err, "updating listener %s/%d", want.protocol, want.port)
			}
			log.Info("updated listener", "port", want.port, "protocol", want.protocol, "targetGroup", want.group.name)
		}
	}
	for port, ls := range have {
		for _, l := range ls {
			if _, err := p.c.ELBv2.DeleteListener(ctx, &elbv2.DeleteListenerInput{ListenerArn: l.ListenerArn}); err != nil && errCode(err) != "ListenerNotFound" {
				return wrap(err, "deleting listener on port %d", port)
			}
			log.Info("deleted listener", "port", port)
		}
	}
	return nil
}

// forwardTarget is the target group a listener forwards to, or "".
func forwardTarget(l elbtypes.Listener) string {
	for _, a := range l.DefaultActions {
		if a.Type != elbtypes.ActionTypeEnumForward {
			continue
		}
		if a.TargetGroupArn != nil {
			return *a.TargetGroupArn
		}
		if a.ForwardConfig != nil && len(a.ForwardConfig.TargetGroups) == 1 {
			return aws.ToString(a.ForwardConfig.TargetGroups[0].TargetGroupArn)
		}
	}
	return ""
}
