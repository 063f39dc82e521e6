package aws

import (
	"cmp"
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
	var arns []string
	for _, ls := range have {
		for _, l := range ls {
			arns = append(arns, aws.ToString(l.ListenerArn))
		}
	}
	tags, err := p.elbTags(ctx, arns)
	if err != nil {
		return err
	}
	for _, want := range d.listeners {
		tg := groups[want.group.name].arn
		actions := []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: aws.String(tg)}}
		ls := have[want.port]
		if len(ls) == 0 {
			in := &elbv2.CreateListenerInput{
				LoadBalancerArn: aws.String(lbARN),
				Port:            aws.Int32(want.port),
				Protocol:        elbtypes.ProtocolEnum(want.protocol),
				DefaultActions:  actions,
				Tags:            tagList(p.wantTags(d)),
			}
			if t := want.tls; t != nil {
				in.Certificates = []elbtypes.Certificate{{CertificateArn: aws.String(t.certificates[0])}}
				in.SslPolicy = aws.String(t.policy)
				if t.alpn != "" {
					in.AlpnPolicy = []string{t.alpn}
				}
			}
			out, err := p.c.ELBv2.CreateListener(ctx, in)
			if err != nil {
				return wrap(err, "creating listener %s/%d", want.protocol, want.port)
			}
			log.Info("created listener", "port", want.port, "protocol", want.protocol, "targetGroup", want.group.name)
			if want.tls != nil && len(out.Listeners) > 0 {
				if err := p.syncCertificates(ctx, aws.ToString(out.Listeners[0].ListenerArn), want); err != nil {
					return err
				}
			}
			continue
		}
		l := ls[0]
		have[want.port] = ls[1:]
		if in := listenerChange(l, want, tg); in != nil {
			in.DefaultActions = actions
			if _, err := p.c.ELBv2.ModifyListener(ctx, in); err != nil {
				return wrap(err, "updating listener %s/%d", want.protocol, want.port)
			}
			log.Info("updated listener", "port", want.port, "protocol", want.protocol, "targetGroup", want.group.name)
		}
		if want.tls != nil {
			if err := p.syncCertificates(ctx, aws.ToString(l.ListenerArn), want); err != nil {
				return err
			}
		}
		if err := p.syncELBTags(ctx, aws.ToString(l.ListenerArn), tags[aws.ToString(l.ListenerArn)], p.wantTags(d)); err != nil {
			return err
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

// listenerChange returns the ModifyListener request that turns l into want, or nil if l is
// right. The protocol is sent only when it changes, as AWS keeps the TLS settings of a
// listener that stays TLS.
func listenerChange(l elbtypes.Listener, want listenerSpec, tg string) *elbv2.ModifyListenerInput {
	in := &elbv2.ModifyListenerInput{ListenerArn: l.ListenerArn}
	changed := forwardTarget(l) != tg
	if string(l.Protocol) != want.protocol {
		in.Protocol, changed = elbtypes.ProtocolEnum(want.protocol), true
	}
	if t := want.tls; t != nil {
		var cert, alpn string
		if len(l.Certificates) > 0 {
			cert = aws.ToString(l.Certificates[0].CertificateArn)
		}
		if len(l.AlpnPolicy) > 0 && l.AlpnPolicy[0] != "None" {
			alpn = l.AlpnPolicy[0]
		}
		if in.Protocol != "" || cert != t.certificates[0] {
			in.Certificates, changed = []elbtypes.Certificate{{CertificateArn: aws.String(t.certificates[0])}}, true
		}
		if in.Protocol != "" || aws.ToString(l.SslPolicy) != t.policy {
			in.SslPolicy, changed = aws.String(t.policy), true
		}
		if in.Protocol != "" || alpn != t.alpn {
			in.AlpnPolicy, changed = []string{cmp.Or(t.alpn, "None")}, true
		}
	}
	if !changed {
		return nil
	}
	return in
}

// syncCertificates makes a TLS listener's SNI certificates (all but the default) the wanted
// ones.
func (p *NLB) syncCertificates(ctx context.Context, arn string, want listenerSpec) error {
	extra := map[string]bool{}
	for _, c := range want.tls.certificates[1:] {
		extra[c] = true
	}
	var remove []elbtypes.Certificate
	pages := elbv2.NewDescribeListenerCertificatesPaginator(p.c.ELBv2, &elbv2.DescribeListenerCertificatesInput{ListenerArn: aws.String(arn)})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return wrap(err, "listing the certificates of listener %d", want.port)
		}
		for _, c := range out.Certificates {
			a := aws.ToString(c.CertificateArn)
			switch {
			case aws.ToBool(c.IsDefault):
			case extra[a]:
				delete(extra, a)
			default:
				remove = append(remove, elbtypes.Certificate{CertificateArn: c.CertificateArn})
			}
		}
	}
	var add []elbtypes.Certificate
	for _, c := range want.tls.certificates[1:] {
		if extra[c] {
			add = append(add, elbtypes.Certificate{CertificateArn: aws.String(c)})
		}
	}
	log := logr.FromContextOrDiscard(ctx)
	if len(add) > 0 {
		if _, err := p.c.ELBv2.AddListenerCertificates(ctx, &elbv2.AddListenerCertificatesInput{ListenerArn: aws.String(arn), Certificates: add}); err != nil {
			return wrap(err, "adding certificates to listener %d", want.port)
		}
		log.Info("added listener certificates", "port", want.port, "count", len(add))
	}
	if len(remove) > 0 {
		if _, err := p.c.ELBv2.RemoveListenerCertificates(ctx, &elbv2.RemoveListenerCertificatesInput{ListenerArn: aws.String(arn), Certificates: remove}); err != nil {
			return wrap(err, "removing certificates from listener %d", want.port)
		}
		log.Info("removed listener certificates", "port", want.port, "count", len(remove))
	}
	return nil
}
