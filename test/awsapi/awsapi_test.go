package awsapi_test

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/smithy-go"

	"github.com/fairlead-lb/fairlead/test/awsapi"
)

// clients without retries, so each fault surfaces as the SDK parses it.
func clients(t *testing.T, endpoint string) (*ec2.Client, *elbv2.Client) {
	awsapi.Env(t)
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithBaseEndpoint(endpoint), config.WithRetryMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	return ec2.NewFromConfig(cfg), elbv2.NewFromConfig(cfg)
}

func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestFaultsAreWhatTheSDKExpects(t *testing.T) {
	m := awsapi.StartMoto(t)
	p := awsapi.NewProxy(t, m.URL)
	e, l := clients(t, p.URL)
	ctx := context.Background()

	for _, c := range []struct {
		fault awsapi.Fault
		call  func() error
		code  string
	}{
		{awsapi.Fault{Service: "ec2", Kind: awsapi.Throttle}, func() error { _, err := e.DescribeVpcs(ctx, nil); return err }, "RequestLimitExceeded"},
		{awsapi.Fault{Service: "elasticloadbalancing", Kind: awsapi.Throttle}, func() error { _, err := l.DescribeLoadBalancers(ctx, nil); return err }, "Throttling"},
		{awsapi.Fault{Kind: awsapi.ServerError}, func() error { _, err := l.DescribeLoadBalancers(ctx, nil); return err }, "InternalFailure"},
		{awsapi.Fault{Service: "ec2", Kind: awsapi.AccessDenied}, func() error { _, err := e.DescribeVpcs(ctx, nil); return err }, "UnauthorizedOperation"},
		{awsapi.Fault{Service: "elasticloadbalancing", Kind: awsapi.AccessDenied}, func() error { _, err := l.DescribeLoadBalancers(ctx, nil); return err }, "AccessDenied"},
	} {
		p.Inject(c.fault)
		err := c.call()
		p.Clear()
		if code(err) != c.code {
			t.Errorf("%v fault: error %v (code %q), want code %q", c.fault.Kind, err, code(err), c.code)
		}
	}

	// Times: only the first matching call fails; other actions pass.
	total0, faulted0 := p.Count("DescribeVpcs")
	p.Inject(awsapi.Fault{Action: "DescribeVpcs", Kind: awsapi.Drop, Times: 1})
	if _, err := e.DescribeSubnets(ctx, nil); err != nil {
		t.Fatalf("DescribeSubnets hit a DescribeVpcs fault: %v", err)
	}
	if _, err := e.DescribeVpcs(ctx, nil); err == nil || code(err) != "" {
		t.Fatalf("dropped DescribeVpcs: %v, want a connection error", err)
	}
	if _, err := e.DescribeVpcs(ctx, nil); err != nil {
		t.Fatalf("DescribeVpcs after the one-shot fault: %v", err)
	}
	if total, faulted := p.Count("DescribeVpcs"); faulted-faulted0 != 1 || total-total0 != 2 {
		t.Fatalf("Count(DescribeVpcs) went from %d, %d to %d, %d; want 2 more calls, 1 more faulted", total0, faulted0, total, faulted)
	}

	// Reject: any code the SDK should see.
	p.Inject(awsapi.Fault{Action: "DescribeVpcs", Kind: awsapi.Reject, Code: "OperationNotPermitted", Message: "protected", Times: 1})
	if _, err := e.DescribeVpcs(ctx, nil); code(err) != "OperationNotPermitted" {
		t.Fatalf("rejected DescribeVpcs: %v, want code OperationNotPermitted", err)
	}

	// Skip: the second matching call fails, the first and third pass.
	p.Inject(awsapi.Fault{Action: "DescribeVpcs", Kind: awsapi.AccessDenied, Skip: 1, Times: 1})
	for i, want := range []string{"", "UnauthorizedOperation", ""} {
		if _, err := e.DescribeVpcs(ctx, nil); code(err) != want {
			t.Fatalf("DescribeVpcs call %d with Skip 1: %v, want code %q", i+1, err, want)
		}
	}
}

func TestReset(t *testing.T) {
	m := awsapi.StartMoto(t)
	e, _ := clients(t, m.URL)
	ctx := context.Background()
	if _, err := e.AllocateAddress(ctx, &ec2.AllocateAddressInput{}); err != nil {
		t.Fatal(err)
	}
	m.Reset(t)
	out, err := e.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{})
	if err != nil || len(out.Addresses) != 0 {
		t.Fatalf("after reset: %d addresses, %v; want none", len(out.Addresses), err)
	}
	// Reset keeps the default VPC the tests build on.
	vpcs, err := e.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{Filters: nil})
	if err != nil || len(vpcs.Vpcs) == 0 || !aws.ToBool(vpcs.Vpcs[0].IsDefault) {
		t.Fatalf("after reset: VPCs %v, %v; want the default one", vpcs, err)
	}
}
