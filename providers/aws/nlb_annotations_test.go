package aws_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/fairlead-lb/fairlead/providers"
	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
	"github.com/fairlead-lb/fairlead/providers/aws/annotations"
	"github.com/fairlead-lb/fairlead/test/awsapi"
)

// certificate requests an ACM certificate from moto (a TLS listener's certificate must exist).
// ACM speaks JSON, not the query protocol of EC2 and ELBv2, and the test needs only this one
// call, so it is made by hand rather than through another SDK module; moto does not check
// signatures, only the service named in the credential scope.
func certificate(t *testing.T, e *env, domain string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.moto.URL, strings.NewReader(`{"DomainName":"`+domain+`"}`))
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "CertificateManager.RequestCertificate")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/"+awsapi.Region+"/acm/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("requesting a certificate from moto: %v", err)
	}
	defer resp.Body.Close()
	var out struct{ CertificateArn string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.CertificateArn == "" {
		t.Fatalf("requesting a certificate from moto: %s, %v", resp.Status, err)
	}
	return out.CertificateArn
}

// nlbView is what the test reads back from AWS (without the proxy) about the Service's NLB.
type nlbView struct {
	lb        elbtypes.LoadBalancer
	lbAttrs   map[string]string
	lbTags    map[string]string
	listeners map[int32]elbtypes.Listener
	sni       map[int32][]string // non-default certificates per listener port
	groups    map[int32]elbtypes.TargetGroup
	tgAttrs   map[int32]map[string]string
	tgTags    map[int32]map[string]string
	targets   map[int32][]string
	sgTags    map[string]string
}

func (e *env) view(t *testing.T, key string) nlbView {
	t.Helper()
	return e.viewNamed(t, fairaws.LoadBalancerName(cluster, key))
}

func (e *env) viewNamed(t *testing.T, name string) nlbView {
	t.Helper()
	ctx := context.Background()
	c := e.direct.ELBv2
	lbs, err := c.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{Names: []string{name}})
	if err != nil || len(lbs.LoadBalancers) != 1 {
		t.Fatalf("load balancer %s: %v, %v", name, lbs, err)
	}
	v := nlbView{lb: lbs.LoadBalancers[0], listeners: map[int32]elbtypes.Listener{}, sni: map[int32][]string{},
		groups: map[int32]elbtypes.TargetGroup{}, tgAttrs: map[int32]map[string]string{}, tgTags: map[int32]map[string]string{}, targets: map[int32][]string{}}
	tags := func(arn string) map[string]string {
		out, err := c.DescribeTags(ctx, &elbv2.DescribeTagsInput{ResourceArns: []string{arn}})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, tg := range out.TagDescriptions[0].Tags {
			m[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
		}
		return m
	}
	v.lbTags = tags(aws.ToString(v.lb.LoadBalancerArn))
	attrs, err := c.DescribeLoadBalancerAttributes(ctx, &elbv2.DescribeLoadBalancerAttributesInput{LoadBalancerArn: v.lb.LoadBalancerArn})
	if err != nil {
		t.Fatal(err)
	}
	v.lbAttrs = map[string]string{}
	for _, a := range attrs.Attributes {
		v.lbAttrs[aws.ToString(a.Key)] = aws.ToString(a.Value)
	}
	ls, err := c.DescribeListeners(ctx, &elbv2.DescribeListenersInput{LoadBalancerArn: v.lb.LoadBalancerArn})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls.Listeners {
		port := aws.ToInt32(l.Port)
		v.listeners[port] = l
		certs, err := c.DescribeListenerCertificates(ctx, &elbv2.DescribeListenerCertificatesInput{ListenerArn: l.ListenerArn})
		if err != nil {
			t.Fatal(err)
		}
		for _, cert := range certs.Certificates {
			if !aws.ToBool(cert.IsDefault) {
				v.sni[port] = append(v.sni[port], aws.ToString(cert.CertificateArn))
			}
		}
		tgs, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{aws.ToString(l.DefaultActions[0].TargetGroupArn)}})
		if err != nil {
			t.Fatal(err)
		}
		g := tgs.TargetGroups[0]
		v.groups[port] = g
		v.tgTags[port] = tags(aws.ToString(g.TargetGroupArn))
		ga, err := c.DescribeTargetGroupAttributes(ctx, &elbv2.DescribeTargetGroupAttributesInput{TargetGroupArn: g.TargetGroupArn})
		if err != nil {
			t.Fatal(err)
		}
		v.tgAttrs[port] = map[string]string{}
		for _, a := range ga.Attributes {
			v.tgAttrs[port][aws.ToString(a.Key)] = aws.ToString(a.Value)
		}
		th, err := c.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: g.TargetGroupArn})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range th.TargetHealthDescriptions {
			v.targets[port] = append(v.targets[port], aws.ToString(d.Target.Id))
		}
		slices.Sort(v.targets[port])
	}
	sgs, err := e.direct.EC2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: v.lb.SecurityGroups})
	if err != nil || len(sgs.SecurityGroups) != 1 {
		t.Fatalf("security group of %s: %v", name, err)
	}
	v.sgTags = map[string]string{}
	for _, tg := range sgs.SecurityGroups[0].Tags {
		v.sgTags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	return v
}

// lastCall returns the parameters of the last request for action the proxy saw.
func lastCall(t *testing.T, e *env, action string) map[string]string {
	t.Helper()
	calls := e.proxy.Calls()
	for i := len(calls) - 1; i >= 0; i-- {
		if calls[i].Action == action {
			m := map[string]string{}
			for k, v := range calls[i].Params {
				m[k] = v[0]
			}
			return m
		}
	}
	t.Fatalf("no %s request was sent", action)
	return nil
}

func ann(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[annotations.Prefix+kv[i]] = kv[i+1]
	}
	return m
}

// The annotations of the AWS Load Balancer Controller, each read back with Describe* calls
// after creation, after a change and after its removal; what moto does not model is checked in
// the request the SDK sent.
func TestNLBAnnotations(t *testing.T) {
	e := newEnv(t)
	p := e.nlb(t)
	cert1, cert2 := certificate(t, e, "shop.example.com"), certificate(t, e, "www.example.com")
	n1, n2, n3 := e.nodes[0].provider(), e.nodes[1].provider(), e.nodes[2].provider()
	n2.Labels = map[string]string{"pool": "edge"}
	n3.Labels = map[string]string{"pool": "edge"}
	svc := &providers.Service{
		Namespace: "shop", Name: "web", Families: []string{"IPv4"}, Nodes: []providers.Node{n1, n2, n3},
		Ports: []providers.Port{
			{Name: "http", Protocol: "TCP", Port: 80, NodePort: 30080},
			{Name: "https", Protocol: "TCP", Port: 443, NodePort: 30443},
		},
	}
	svc.Annotations = ann(
		annotations.HealthProtocol, "HTTP", annotations.HealthPort, "8080", annotations.HealthPath, "/ready",
		annotations.HealthInterval, "30", annotations.HealthTimeout, "6", annotations.HealthyThreshold, "3",
		annotations.UnhealthyThreshold, "4", annotations.HealthSuccessCodes, "200-299",
		annotations.SSLCert, cert1+","+cert2, annotations.SSLPorts, "https", annotations.BackendProtocol, "ssl",
		annotations.SSLNegotiationPolicy, "ELBSecurityPolicy-TLS13-1-2-Res-2021-06", annotations.ALPNPolicy, "HTTP2Preferred",
		annotations.ProxyProtocol, "*",
		annotations.LoadBalancerAttributes, "load_balancing.cross_zone.enabled=true,access_logs.s3.enabled=true,access_logs.s3.bucket=shop-logs",
		annotations.TargetGroupAttributes, "deregistration_delay.timeout_seconds=30",
		annotations.AdditionalResourceTags, "team=shop,env=prod",
		annotations.TargetNodeLabels, "pool=edge",
	)
	mustEnsure(t, p, svc)
	v := e.view(t, "shop/web")
	arn := aws.ToString(v.lb.LoadBalancerArn)

	t.Run("created", func(t *testing.T) {
		for port, g := range v.groups {
			if g.HealthCheckProtocol != "HTTP" || aws.ToString(g.HealthCheckPort) != "8080" || aws.ToString(g.HealthCheckPath) != "/ready" ||
				aws.ToInt32(g.HealthCheckIntervalSeconds) != 30 || aws.ToInt32(g.HealthCheckTimeoutSeconds) != 6 ||
				aws.ToInt32(g.HealthyThresholdCount) != 3 || aws.ToInt32(g.UnhealthyThresholdCount) != 4 ||
				g.Matcher == nil || aws.ToString(g.Matcher.HttpCode) != "200-299" {
				t.Errorf("port %d: health check %s:%s%s every %ds timeout %ds %d/%d codes %v, want the annotations'", port, g.HealthCheckProtocol,
					aws.ToString(g.HealthCheckPort), aws.ToString(g.HealthCheckPath), aws.ToInt32(g.HealthCheckIntervalSeconds),
					aws.ToInt32(g.HealthCheckTimeoutSeconds), aws.ToInt32(g.HealthyThresholdCount), aws.ToInt32(g.UnhealthyThresholdCount), g.Matcher)
			}
			if a := v.tgAttrs[port]; a["proxy_protocol_v2.enabled"] != "true" || a["deregistration_delay.timeout_seconds"] != "30" {
				t.Errorf("port %d: target group attributes %v, want proxy protocol v2 and a 30 s deregistration delay", port, a)
			}
			if want := instances(e.nodes[1], e.nodes[2]); !slices.Equal(v.targets[port], want) {
				t.Errorf("port %d: targets %v, want the nodes labelled pool=edge %v", port, v.targets[port], want)
			}
			if v.tgTags[port]["team"] != "shop" || v.tgTags[port]["env"] != "prod" {
				t.Errorf("port %d: target group tags %v", port, v.tgTags[port])
			}
		}
		if g := v.groups[443]; g.Protocol != "TLS" || v.groups[80].Protocol != "TCP" {
			t.Errorf("target groups: 443 %s, 80 %s; want TLS (backend-protocol ssl) and TCP", g.Protocol, v.groups[80].Protocol)
		}
		l := v.listeners[443]
		// (AWS lists only the default certificate here; moto 5.2.1 lists the SNI ones after it.)
		if l.Protocol != "TLS" || len(l.Certificates) == 0 || aws.ToString(l.Certificates[0].CertificateArn) != cert1 ||
			aws.ToString(l.SslPolicy) != "ELBSecurityPolicy-TLS13-1-2-Res-2021-06" || !slices.Equal(l.AlpnPolicy, []string{"HTTP2Preferred"}) {
			t.Errorf("listener 443: %s certs %v policy %s alpn %v", l.Protocol, l.Certificates, aws.ToString(l.SslPolicy), l.AlpnPolicy)
		}
		if !slices.Equal(v.sni[443], []string{cert2}) {
			t.Errorf("listener 443: SNI certificates %v, want [%s]", v.sni[443], cert2)
		}
		if v.listeners[80].Protocol != "TCP" {
			t.Errorf("listener 80: %s, want TCP (not in ssl-ports)", v.listeners[80].Protocol)
		}
		if a := v.lbAttrs; a["load_balancing.cross_zone.enabled"] != "true" || a["access_logs.s3.enabled"] != "true" || a["access_logs.s3.bucket"] != "shop-logs" {
			t.Errorf("load balancer attributes %v", a)
		}
		if v.lbTags["team"] != "shop" || v.sgTags["team"] != "shop" || v.lbTags[fairaws.TagService] != "shop/web" {
			t.Errorf("tags: load balancer %v, security group %v", v.lbTags, v.sgTags)
		}
	})

	t.Run("unchanged", func(t *testing.T) { assertNoChange(t, e, p, svc) })

	t.Run("created before the fixed-settings tag", func(t *testing.T) {
		// An NLB of an earlier Fairlead has no hash of its fixed settings: it is adopted, not
		// replaced, and gets the tag.
		if _, err := e.direct.ELBv2.RemoveTags(context.Background(), &elbv2.RemoveTagsInput{
			ResourceArns: []string{arn}, TagKeys: []string{fairaws.TagSpec},
		}); err != nil {
			t.Fatal(err)
		}
		mustEnsure(t, p, svc)
		v := e.view(t, "shop/web")
		if aws.ToString(v.lb.LoadBalancerArn) != arn || v.lbTags[fairaws.TagSpec] == "" {
			t.Fatalf("load balancer %s (was %s), tags %v: want it adopted and tagged", aws.ToString(v.lb.LoadBalancerArn), arn, v.lbTags)
		}
	})

	t.Run("changed in place", func(t *testing.T) {
		svc.Annotations = ann(
			annotations.HealthProtocol, "HTTP", annotations.HealthPort, "8080", annotations.HealthPath, "/live",
			annotations.HealthInterval, "10", annotations.HealthyThreshold, "2", annotations.UnhealthyThreshold, "2",
			annotations.SSLCert, cert2, annotations.SSLPorts, "443", annotations.BackendProtocol, "ssl", annotations.ALPNPolicy, "HTTP1Only",
			annotations.AdditionalResourceTags, "team=web",
		)
		mustEnsure(t, p, svc)
		v := e.view(t, "shop/web")
		if got := aws.ToString(v.lb.LoadBalancerArn); got != arn {
			t.Fatalf("load balancer replaced (%s, was %s); every change here is possible in place", got, arn)
		}
		for port, g := range v.groups {
			if aws.ToString(g.HealthCheckPath) != "/live" || aws.ToInt32(g.HealthCheckIntervalSeconds) != 10 || aws.ToInt32(g.HealthyThresholdCount) != 2 {
				t.Errorf("port %d: health check %s every %d s, healthy after %d", port, aws.ToString(g.HealthCheckPath),
					aws.ToInt32(g.HealthCheckIntervalSeconds), aws.ToInt32(g.HealthyThresholdCount))
			}
			// Removed from the annotations: back to AWS' defaults.
			if a := v.tgAttrs[port]; a["proxy_protocol_v2.enabled"] != "false" || a["deregistration_delay.timeout_seconds"] != "300" {
				t.Errorf("port %d: target group attributes %v, want the defaults back", port, a)
			}
			if want := instances(e.nodes...); !slices.Equal(v.targets[port], want) {
				t.Errorf("port %d: targets %v, want every node %v", port, v.targets[port], want)
			}
			if v.tgTags[port]["team"] != "web" || v.tgTags[port]["env"] != "" {
				t.Errorf("port %d: target group tags %v, want team=web and no env", port, v.tgTags[port])
			}
		}
		if a := v.lbAttrs; a["load_balancing.cross_zone.enabled"] != "false" || a["access_logs.s3.enabled"] != "false" {
			t.Errorf("load balancer attributes %v, want the defaults back", a)
		}
		if v.lbTags["team"] != "web" || v.sgTags["team"] != "web" || v.lbTags["env"] != "" || v.sgTags["env"] != "" {
			t.Errorf("tags: load balancer %v, security group %v", v.lbTags, v.sgTags)
		}
		if len(v.sni[443]) != 0 {
			t.Errorf("listener 443: SNI certificates %v, want none", v.sni[443])
		}
		// moto 5.2.1 keeps a TLS listener's certificate and ALPN policy through ModifyListener
		// (it updates certificates for HTTPS listeners only, and ignores AlpnPolicy), so the
		// request is checked instead.
		req := lastCall(t, e, "ModifyListener")
		if req["Certificates.member.1.CertificateArn"] != cert2 || req["AlpnPolicy.member.1"] != "HTTP1Only" || req["Protocol"] != "" {
			t.Errorf("ModifyListener request %v, want certificate %s, ALPN HTTP1Only, the protocol left alone", req, cert2)
		}
	})

	t.Run("annotations removed", func(t *testing.T) {
		svc.Annotations = nil
		mustEnsure(t, p, svc)
		v := e.view(t, "shop/web")
		if got := aws.ToString(v.lb.LoadBalancerArn); got != arn {
			t.Fatalf("load balancer replaced (%s, was %s)", got, arn)
		}
		for port, g := range v.groups {
			if g.Protocol != "TCP" || g.HealthCheckProtocol != "TCP" || aws.ToString(g.HealthCheckPort) != "traffic-port" {
				t.Errorf("port %d: target group %s, health check %s:%s; want TCP on the traffic port", port, g.Protocol, g.HealthCheckProtocol, aws.ToString(g.HealthCheckPort))
			}
			if v.tgTags[port]["team"] != "" {
				t.Errorf("port %d: target group tags %v", port, v.tgTags[port])
			}
		}
		if l := v.listeners[443]; l.Protocol != "TCP" {
			t.Errorf("listener 443: %s, want TCP", l.Protocol)
		}
		if v.lbTags["team"] != "" || v.sgTags["team"] != "" || v.lbTags[fairaws.TagCluster] != cluster {
			t.Errorf("tags: load balancer %v, security group %v; want Fairlead's only", v.lbTags, v.sgTags)
		}
		if inv := e.inventory(t); len(inv.TargetGroups) != 2 || len(inv.LoadBalancers) != 1 || len(inv.Listeners) != 2 {
			t.Errorf("left over: %+v", inv)
		}
	})

	t.Run("TLS added to a TCP listener", func(t *testing.T) {
		svc.Annotations = ann(annotations.SSLCert, cert1)
		_, err := p.Ensure(ctxFor(t), svc)
		// AWS changes a listener's protocol in place; moto 5.2.1 refuses ModifyListener to TLS
		// ("Protocol TLS is not supported"), so the request is what is checked.
		req := lastCall(t, e, "ModifyListener")
		if req["Protocol"] != "TLS" || req["Certificates.member.1.CertificateArn"] != cert1 || req["SslPolicy"] != annotations.DefaultSSLPolicy || req["Port"] != "" {
			t.Errorf("ModifyListener request %v, want protocol TLS, certificate %s, policy %s", req, cert1, annotations.DefaultSSLPolicy)
		}
		if err == nil || !strings.Contains(err.Error(), "UnsupportedProtocol") {
			t.Logf("moto accepted the change to TLS now (%v): check the listener instead of the request", err)
		}
		svc.Annotations = nil
		mustEnsure(t, p, svc)
	})

	t.Run("dual-stack", func(t *testing.T) {
		svc.Annotations = ann(annotations.IPAddressType, "dualstack")
		mustEnsure(t, p, svc)
		v := e.view(t, "shop/web")
		if aws.ToString(v.lb.LoadBalancerArn) != arn || v.lb.IpAddressType != "dualstack" {
			t.Fatalf("load balancer %s is %s, want %s made dualstack in place", aws.ToString(v.lb.LoadBalancerArn), v.lb.IpAddressType, arn)
		}
		name := fairaws.LoadBalancerName(cluster, "shop/web")
		if inv := e.inventory(t); count(inv.Rules, name+" tcp 443 ::/0") != 1 || count(inv.Rules, name+" tcp 443 0.0.0.0/0") != 1 {
			t.Fatalf("rules %v, want clients of both families", inv.Rules)
		}
		assertNoChange(t, e, p, svc)
		// An IPv6-first Service with ip targets: its pods' IPv6 addresses in an ipv6 group.
		svc.Families = []string{"IPv6", "IPv4"}
		svc.Annotations = ann(annotations.IPAddressType, "dualstack", annotations.TargetType, "ip")
		pods := []netip.AddrPort{netip.MustParseAddrPort("[2001:db8::7]:8443"), netip.MustParseAddrPort("10.244.1.7:8443")}
		svc.Ports[0].Endpoints, svc.Ports[1].Endpoints = pods, pods
		mustEnsure(t, p, svc)
		assertNoChange(t, e, p, svc)
		v = e.view(t, "shop/web")
		for port, g := range v.groups {
			if g.IpAddressType != "ipv6" || g.TargetType != "ip" || !slices.Equal(v.targets[port], []string{"2001:db8::7"}) {
				t.Errorf("port %d: %s %s group with targets %v, want an ipv6 ip group with the pod's IPv6 address", port, g.IpAddressType, g.TargetType, v.targets[port])
			}
		}
		// Back: ipv4 in place, the IPv6 rules gone.
		svc.Families, svc.Ports[0].Endpoints, svc.Ports[1].Endpoints = []string{"IPv4"}, nil, nil
		svc.Annotations = nil
		mustEnsure(t, p, svc)
		v = e.view(t, "shop/web")
		if aws.ToString(v.lb.LoadBalancerArn) != arn || v.lb.IpAddressType != "ipv4" {
			t.Fatalf("load balancer %s is %s, want %s back to ipv4 in place", aws.ToString(v.lb.LoadBalancerArn), v.lb.IpAddressType, arn)
		}
		if inv := e.inventory(t); count(inv.Rules, "::/0") != 0 || len(inv.TargetGroups) != 2 || count(inv.TargetGroups, "instance") != 2 {
			t.Fatalf("after going back to ipv4: rules %v, target groups %v", inv.Rules, inv.TargetGroups)
		}
	})

	t.Run("load balancer name", func(t *testing.T) {
		svc.Annotations = ann(annotations.LoadBalancerName, "shop-web")
		mustEnsure(t, p, svc)
		v := e.viewNamed(t, "shop-web")
		if inv := e.inventory(t); !reflect.DeepEqual(inv.LoadBalancers, []string{"shop-web internet-facing"}) || len(inv.Listeners) != 2 {
			t.Fatalf("load balancers %v, listeners %v; want only shop-web, with both listeners", inv.LoadBalancers, inv.Listeners)
		}
		if v.sgTags[fairaws.TagNames] != "shop-web" {
			t.Fatalf("security group tags %v, want the name recorded", v.sgTags)
		}
		assertNoChange(t, e, p, svc)

		// Renamed, and the controller stops before the old one is deleted: both names are
		// recorded, so a restarted controller deleting the Service finds both.
		svc.Annotations = ann(annotations.LoadBalancerName, "shop-web-2")
		e.proxy.Inject(awsapi.Fault{Service: "elasticloadbalancing", Action: "DeleteLoadBalancer", Kind: awsapi.AccessDenied})
		_, err := p.Ensure(ctxFor(t), svc)
		e.proxy.Clear()
		if providers.ReasonOf(err) != providers.ReasonPermissionDenied {
			t.Fatalf("rename with DeleteLoadBalancer denied: %v", err)
		}
		fresh := e.nlb(t)
		if owned, err := fresh.Owned(ctxFor(t)); err != nil || !reflect.DeepEqual(owned, []string{"shop/web"}) {
			t.Fatalf("Owned = %v, %v; want shop/web", owned, err)
		}
		mustRelease(t, fresh, "shop/web")
		assertEmpty(t, e)

		// Renamed for real: the old one goes, the new name alone is recorded; then back to
		// Fairlead's own name.
		svc.Annotations = ann(annotations.LoadBalancerName, "shop-web")
		mustEnsure(t, p, svc)
		svc.Annotations = ann(annotations.LoadBalancerName, "shop-web-2")
		mustEnsure(t, p, svc)
		if v := e.viewNamed(t, "shop-web-2"); v.sgTags[fairaws.TagNames] != "shop-web-2" {
			t.Fatalf("security group tags %v, want only the new name", v.sgTags)
		}
		if inv := e.inventory(t); !reflect.DeepEqual(inv.LoadBalancers, []string{"shop-web-2 internet-facing"}) {
			t.Fatalf("load balancers %v, want only shop-web-2", inv.LoadBalancers)
		}
		// A name someone else's load balancer has: a conflict, and theirs is left alone.
		theirs, err := e.direct.ELBv2.CreateLoadBalancer(context.Background(), createLBInput("someone-else", e))
		if err != nil {
			t.Fatal(err)
		}
		svc.Annotations = ann(annotations.LoadBalancerName, "someone-else")
		if _, err := p.Ensure(ctxFor(t), svc); providers.ReasonOf(err) != providers.ReasonConflict {
			t.Fatalf("the name of someone else's load balancer: %v, want reason %s", err, providers.ReasonConflict)
		}
		// Given up, while theirs still exists: the Service is served again, theirs untouched.
		svc.Annotations = ann(annotations.LoadBalancerName, "shop-web-2")
		mustEnsure(t, p, svc)
		if _, err := e.direct.ELBv2.DescribeLoadBalancers(context.Background(), &elbv2.DescribeLoadBalancersInput{Names: []string{"someone-else"}}); err != nil {
			t.Fatalf("someone else's load balancer: %v", err)
		}
		if _, err := e.direct.ELBv2.DeleteLoadBalancer(context.Background(), &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: theirs.LoadBalancers[0].LoadBalancerArn}); err != nil {
			t.Fatal(err)
		}

		svc.Annotations = nil
		mustEnsure(t, p, svc)
		if v := e.view(t, "shop/web"); v.sgTags[fairaws.TagNames] != "" {
			t.Fatalf("security group tags %v, want no name recorded", v.sgTags)
		}
		if inv := e.inventory(t); len(inv.LoadBalancers) != 1 {
			t.Fatalf("load balancers %v, want only Fairlead's", inv.LoadBalancers)
		}
	})

	t.Run("security groups", func(t *testing.T) {
		out, err := e.direct.EC2.CreateSecurityGroup(context.Background(), &ec2.CreateSecurityGroupInput{
			GroupName: aws.String("frontend"), Description: aws.String("the team's own"), VpcId: aws.String(e.vpc),
		})
		if err != nil {
			t.Fatal(err)
		}
		frontend := aws.ToString(out.GroupId)
		arn := aws.ToString(e.view(t, "shop/web").lb.LoadBalancerArn)
		name := fairaws.LoadBalancerName(cluster, "shop/web")

		// A group that does not exist, or source ranges Fairlead's group would no longer
		// enforce: refused, nothing changes.
		before := e.inventory(t)
		for _, c := range []struct {
			groups string
			ranges []netip.Prefix
		}{{"missing", nil}, {"frontend", []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}} {
			svc.Annotations, svc.SourceRanges = ann(annotations.SecurityGroups, c.groups), c.ranges
			if _, err := p.Ensure(ctxFor(t), svc); providers.ReasonOf(err) != providers.ReasonInvalidService {
				t.Fatalf("security-groups %q with ranges %v: %v, want reason %s", c.groups, c.ranges, err, providers.ReasonInvalidService)
			}
		}
		svc.SourceRanges = nil
		if after := e.inventory(t); !reflect.DeepEqual(before, after) {
			t.Fatalf("a refused Service changed AWS:\nbefore %+v\nafter  %+v", before, after)
		}

		// By Name tag: in place; Fairlead's group stays as the record, opening nothing, and the
		// nodes' group rules for it go (the team opens its ports itself).
		svc.Annotations = ann(annotations.SecurityGroups, "frontend")
		mustEnsure(t, p, svc)
		v := e.view(t, "shop/web")
		if aws.ToString(v.lb.LoadBalancerArn) != arn || !slices.Equal(v.lb.SecurityGroups, []string{frontend}) {
			t.Fatalf("load balancer %s has groups %v, want %s with [%s] in place", aws.ToString(v.lb.LoadBalancerArn), v.lb.SecurityGroups, arn, frontend)
		}
		if inv := e.inventory(t); count(inv.Rules, name+" ") != 0 || len(inv.NodeRules) != 0 || count(inv.SecurityGroups, name) != 1 {
			t.Fatalf("rules %v, node rules %v, groups %v: want Fairlead's group kept, opening nothing", inv.Rules, inv.NodeRules, inv.SecurityGroups)
		}
		assertNoChange(t, e, p, svc)

		svc.Annotations = nil
		mustEnsure(t, p, svc)
		v = e.view(t, "shop/web")
		if inv := e.inventory(t); len(v.lb.SecurityGroups) != 1 || v.lb.SecurityGroups[0] == frontend || count(inv.Rules, name+" tcp 80 0.0.0.0/0") != 1 || len(inv.NodeRules) == 0 {
			t.Fatalf("after the annotation's removal: groups %v, rules %v, node rules %v", v.lb.SecurityGroups, inv.Rules, inv.NodeRules)
		}
		if _, err := e.direct.EC2.DeleteSecurityGroup(context.Background(), &ec2.DeleteSecurityGroupInput{GroupId: aws.String(frontend)}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("subnets and Elastic IPs", func(t *testing.T) {
		subnets, err := e.direct.EC2.DescribeSubnets(context.Background(), &ec2.DescribeSubnetsInput{})
		if err != nil {
			t.Fatal(err)
		}
		a, b := aws.ToString(subnets.Subnets[0].SubnetId), aws.ToString(subnets.Subnets[1].SubnetId)
		tag(t, e.direct, []string{b}, "Name", "public-b")
		var allocs []string
		for range 3 {
			out, err := e.direct.EC2.AllocateAddress(context.Background(), &ec2.AllocateAddressInput{Domain: ec2types.DomainTypeVpc})
			if err != nil {
				t.Fatal(err)
			}
			allocs = append(allocs, aws.ToString(out.AllocationId))
		}
		t.Cleanup(func() {
			for _, id := range allocs {
				_, _ = e.direct.EC2.ReleaseAddress(context.Background(), &ec2.ReleaseAddressInput{AllocationId: aws.String(id)})
			}
		})

		// One subnet, by ID: fewer than the tagged two, so the load balancer is replaced.
		svc.Annotations = ann(annotations.Subnets, a)
		mustEnsure(t, p, svc)
		v := e.view(t, "shop/web")
		if zones := v.lb.AvailabilityZones; len(zones) != 1 || aws.ToString(zones[0].SubnetId) != a {
			t.Fatalf("subnets %v, want [%s]", zones, a)
		}
		arn := aws.ToString(v.lb.LoadBalancerArn)
		// A subnet added, by Name: in place.
		svc.Annotations = ann(annotations.Subnets, a+",public-b")
		mustEnsure(t, p, svc)
		v = e.view(t, "shop/web")
		if len(v.lb.AvailabilityZones) != 2 || aws.ToString(v.lb.LoadBalancerArn) != arn {
			t.Fatalf("subnets %v (load balancer %s, was %s): want both, in place", v.lb.AvailabilityZones, aws.ToString(v.lb.LoadBalancerArn), arn)
		}
		// Elastic IPs: fixed at creation, so each change replaces the load balancer. moto 5.2.1
		// ignores a subnet mapping's AllocationId (it reports no addresses per zone), so the
		// request is checked.
		for _, pair := range [][]string{allocs[:2], {allocs[2], allocs[0]}} {
			svc.Annotations = ann(annotations.Subnets, a+",public-b", annotations.EIPAllocations, strings.Join(pair, ","))
			mustEnsure(t, p, svc)
			req := lastCall(t, e, "CreateLoadBalancer")
			if req["SubnetMappings.member.1.SubnetId"] != a || req["SubnetMappings.member.1.AllocationId"] != pair[0] ||
				req["SubnetMappings.member.2.SubnetId"] != b || req["SubnetMappings.member.2.AllocationId"] != pair[1] {
				t.Errorf("CreateLoadBalancer request %v, want %s on %s and %s on %s", req, pair[0], a, pair[1], b)
			}
			if inv := e.inventory(t); len(inv.LoadBalancers) != 1 || len(inv.Listeners) != 2 || len(inv.TargetGroups) != 2 {
				t.Fatalf("after replacing the load balancer: %+v", inv)
			}
		}
		if got := aws.ToString(e.view(t, "shop/web").lb.LoadBalancerArn); got == arn {
			t.Fatalf("Elastic IPs given to an existing load balancer in place")
		}
		// The wrong number of Elastic IPs: refused, nothing changes.
		before := e.inventory(t)
		svc.Annotations = ann(annotations.Subnets, a+",public-b", annotations.EIPAllocations, allocs[0])
		if _, err := p.Ensure(ctxFor(t), svc); providers.ReasonOf(err) != providers.ReasonInvalidService {
			t.Fatalf("one Elastic IP for two subnets: %v, want reason %s", err, providers.ReasonInvalidService)
		}
		if after := e.inventory(t); !reflect.DeepEqual(before, after) {
			t.Fatalf("a refused Service changed AWS:\nbefore %+v\nafter  %+v", before, after)
		}
	})

	t.Run("internal with private addresses", func(t *testing.T) {
		subnets, err := e.direct.EC2.DescribeSubnets(context.Background(), &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{
			{Name: aws.String("tag-key"), Values: []string{"kubernetes.io/role/internal-elb"}},
		}})
		if err != nil || len(subnets.Subnets) != 1 {
			t.Fatalf("internal subnets: %v", err)
		}
		s := subnets.Subnets[0]
		cidr := netip.MustParsePrefix(aws.ToString(s.CidrBlock))
		addr := cidr.Addr().Next().Next().Next().Next().Next().Next().Next().Next().Next().Next() // .10
		outside := netip.MustParseAddr("198.51.100.10")

		before := e.inventory(t)
		svc.Annotations = ann(annotations.Scheme, "internal", annotations.PrivateIPv4Addresses, outside.String())
		if _, err := p.Ensure(ctxFor(t), svc); providers.ReasonOf(err) != providers.ReasonInvalidService || !strings.Contains(err.Error(), aws.ToString(s.SubnetId)) {
			t.Fatalf("an address outside the subnet: %v, want an InvalidService error naming the subnet", err)
		}
		if after := e.inventory(t); !reflect.DeepEqual(before, after) {
			t.Fatalf("a refused Service changed AWS:\nbefore %+v\nafter  %+v", before, after)
		}
		svc.Annotations = ann(annotations.Scheme, "internal", annotations.PrivateIPv4Addresses, addr.String())
		mustEnsure(t, p, svc)
		v := e.view(t, "shop/web")
		if v.lb.Scheme != "internal" || len(v.lb.AvailabilityZones) != 1 || aws.ToString(v.lb.AvailabilityZones[0].SubnetId) != aws.ToString(s.SubnetId) {
			t.Fatalf("load balancer %s in %v, want internal in %s", v.lb.Scheme, v.lb.AvailabilityZones, aws.ToString(s.SubnetId))
		}
		// moto ignores PrivateIPv4Address as it does AllocationId.
		if req := lastCall(t, e, "CreateLoadBalancer"); req["SubnetMappings.member.1.PrivateIPv4Address"] != addr.String() {
			t.Errorf("CreateLoadBalancer request %v, want the private address %s", req, addr)
		}
	})

	t.Run("deletion protection", func(t *testing.T) {
		svc.Annotations = ann(annotations.LoadBalancerAttributes, "deletion_protection.enabled=true")
		mustEnsure(t, p, svc)
		if v := e.view(t, "shop/web"); v.lbAttrs["deletion_protection.enabled"] != "true" {
			t.Fatalf("attributes %v, want deletion protection on", v.lbAttrs)
		}
		// moto 5.2.1 deletes a protected load balancer; AWS answers OperationNotPermitted,
		// injected here.
		e.proxy.Inject(awsapi.Fault{Service: "elasticloadbalancing", Action: "DeleteLoadBalancer", Kind: awsapi.Reject,
			Code: "OperationNotPermitted", Message: "Load balancer '...' cannot be deleted because deletion protection is enabled"})
		err := p.Release(ctxFor(t), "shop/web")
		e.proxy.Clear()
		if providers.ReasonOf(err) != providers.ReasonMisconfigured || !strings.Contains(err.Error(), "deletion_protection.enabled=false") {
			t.Fatalf("Release of a protected load balancer: %v, want reason %s saying how to turn protection off", err, providers.ReasonMisconfigured)
		}
		svc.Annotations = nil
		mustEnsure(t, p, svc)
		if v := e.view(t, "shop/web"); v.lbAttrs["deletion_protection.enabled"] != "false" {
			t.Fatalf("attributes %v, want deletion protection off again", v.lbAttrs)
		}
	})

	t.Run("certificate that does not exist", func(t *testing.T) {
		other := webService(e.nodes[0])
		other.Name = "tls"
		other.Annotations = ann(annotations.SSLCert, "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000")
		_, err := p.Ensure(ctxFor(t), other)
		// Retried (not the Service's own fault): the certificate may be imported or validated later.
		if providers.ReasonOf(err) != providers.ReasonMisconfigured || !strings.Contains(err.Error(), "creating listener TLS/") {
			t.Fatalf("Ensure with a missing certificate: %v, want reason %s", err, providers.ReasonMisconfigured)
		}
		mustRelease(t, p, "shop/tls")
	})

	mustRelease(t, p, "shop/web")
	if inv := e.inventory(t); len(inv.LoadBalancers)+len(inv.TargetGroups)+len(inv.SecurityGroups)+len(inv.Listeners)+len(inv.NodeRules) != 0 {
		t.Fatalf("left behind: %+v", inv)
	}
}

// assertNoChange fails if Ensure of a converged Service calls anything but Describe*.
func assertNoChange(t *testing.T, e *env, p providers.Provider, svc *providers.Service) {
	t.Helper()
	before := len(e.proxy.Calls())
	mustEnsure(t, p, svc)
	for _, c := range e.proxy.Calls()[before:] {
		if !strings.HasPrefix(c.Action, "Describe") {
			t.Errorf("Ensure of an unchanged Service called %s %v", c.Action, c.Params)
		}
	}
}

func instances(ns ...node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.instanceID)
	}
	slices.Sort(out)
	return out
}
