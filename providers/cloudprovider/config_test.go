package cloudprovider

import (
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Config
		err      string
	}{
		{name: "empty file selects the pools", in: "", want: Config{Provider: BackendPools}},
		{name: "pools", in: "provider: pools\n", want: Config{Provider: BackendPools}},
		{name: "nlb", in: "provider: aws-nlb\naws: {region: us-east-1, clusterName: c1, vpcID: vpc-1, endpoint: 'http://127.0.0.1:5000'}\n",
			want: Config{Provider: BackendAWSNLB, AWS: AWSConfig{Region: "us-east-1", ClusterName: "c1", VPCID: "vpc-1", Endpoint: "http://127.0.0.1:5000"}}},
		{name: "eip", in: "provider: aws-eip\naws: {clusterName: c1, eipPool: blue}\n",
			want: Config{Provider: BackendAWSEIP, AWS: AWSConfig{ClusterName: "c1", EIPPool: "blue"}}},
		{name: "unknown provider", in: "provider: gce\n", err: `provider "gce" is not one of`},
		{name: "misspelt field", in: "provider: aws-nlb\naws: {clusterName: c1, vpcID: vpc-1, subnet: [s-1]}\n", err: `unknown field "subnet"`},
		{name: "nlb without cluster name", in: "provider: aws-nlb\naws: {vpcID: vpc-1}\n", err: "needs aws.clusterName"},
		{name: "nlb without VPC", in: "provider: aws-nlb\naws: {clusterName: c1}\n", err: "needs aws.vpcID"},
		{name: "eip without a source of addresses", in: "provider: aws-eip\naws: {clusterName: c1}\n", err: "needs aws.eipPool, aws.allocateOnDemand"},
		{name: "not YAML", in: "provider: [", err: "fairlead cloud-config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConfig(strings.NewReader(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Provider != tc.want.Provider || got.AWS.Region != tc.want.AWS.Region || got.AWS.ClusterName != tc.want.AWS.ClusterName ||
				got.AWS.VPCID != tc.want.AWS.VPCID || got.AWS.Endpoint != tc.want.AWS.Endpoint || got.AWS.EIPPool != tc.want.AWS.EIPPool {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if c, err := ParseConfig(nil); err != nil || c.Provider != BackendPools {
		t.Fatalf("no cloud-config: %+v, %v; want the pools backend", c, err)
	}
}
