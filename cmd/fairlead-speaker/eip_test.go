package main

// This test runs the real fairlead-speaker binary with --aws-eip on three "nodes" (network
// namespaces on one bridge, addressed like the instances moto made for them; test/awsnodes)
// against a real kube-apiserver and moto: the speakers find each other through the member
// list, the elected one associates the Elastic IP, and when its speaker dies (SIGKILL; its Node
// stays Ready) the next one takes the address over, as after a crash on a healthy node.

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	fairaws "github.com/fairlead-lb/fairlead/providers/aws"
	"github.com/fairlead-lb/fairlead/speaker/election"
	"github.com/fairlead-lb/fairlead/test/awsapi"
	"github.com/fairlead-lb/fairlead/test/awsnodes"
	"github.com/fairlead-lb/fairlead/test/controlplane"
	"github.com/fairlead-lb/fairlead/test/kit"
	"github.com/fairlead-lb/fairlead/test/netns"
)

func TestSpeakersMoveElasticIPWhenOwnerDies(t *testing.T) {
	ctx := context.Background()
	ctrllog.SetLogger(logr.Discard())
	netns.Require(t)
	awsapi.Env(t)
	moto := awsapi.StartMoto(t)
	binary := awsnodes.Speaker(t)
	env := controlplane.StartForTest(t, controlplane.Options{})
	cluster := awsnodes.Cluster{Kubeconfig: filepath.Join(t.TempDir(), "kubeconfig"), MotoURL: moto.URL, Name: "test-cluster"}
	if err := env.Kubeconfig(cluster.Kubeconfig); err != nil {
		t.Fatal(err)
	}
	apiserver, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	k8s := env.Client
	cloud, err := fairaws.NewClients(ctx, fairaws.Config{Endpoint: moto.URL})
	if err != nil {
		t.Fatal(err)
	}
	nodes := awsnodes.New(t, k8s, cloud, apiserver.Host, moto.URL, 3)
	byName := map[string]*awsnodes.Node{}
	var names []string
	for _, n := range nodes {
		byName[n.Name] = n
		names = append(names, n.Name)
	}

	// The controller's part, done by hand: an Elastic IP tagged for the Service, in its status.
	addr, err := cloud.EC2.AllocateAddress(ctx, &ec2.AllocateAddressInput{Domain: ec2types.DomainTypeVpc,
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeElasticIp, Tags: []ec2types.Tag{
			{Key: aws.String(fairaws.TagCluster), Value: aws.String(cluster.Name)},
			{Key: aws.String(fairaws.TagService), Value: aws.String("default/web")},
		}}}})
	if err != nil {
		t.Fatal(err)
	}
	pool := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "eips"},
		Spec: v1alpha1.IPPoolSpec{AWS: &v1alpha1.AWSPool{ElasticIPs: &v1alpha1.ElasticIPs{}}}}
	if err := k8s.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", Annotations: map[string]string{v1alpha1.AnnotationPool: "eips"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	if err := k8s.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: aws.ToString(addr.PublicIp)}}
	if err := k8s.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}

	for _, n := range nodes {
		n.StartSpeaker(t, binary, cluster)
	}
	allocation := aws.ToString(addr.AllocationId)
	owner, _ := election.Owner(aws.ToString(addr.PublicIp), names)
	awsnodes.WaitAssociated(t, cloud, allocation, byName[owner])

	// The owner's speaker dies; its Node stays Ready (a kubelet would keep reporting for 40 s
	// or more). The member list notices and the next in rank takes the address.
	byName[owner].Speaker.Kill()
	killed := time.Now()
	rest := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == owner })
	second, _ := election.Owner(aws.ToString(addr.PublicIp), rest)
	awsnodes.WaitAssociated(t, cloud, allocation, byName[second])
	t.Logf("the address moved to %s %v after %s's speaker was killed (2 s of that checking it stays)", second, time.Since(killed), owner)
	var kn corev1.Node
	if err := k8s.Get(ctx, client.ObjectKey{Name: owner}, &kn); err != nil || kn.Status.Conditions[0].Status != corev1.ConditionTrue {
		t.Fatalf("%s should still be Ready: %v %+v", owner, err, kn.Status.Conditions)
	}

	// Back: rendezvous hashing gives the address back to it.
	byName[owner].StartSpeaker(t, binary, cluster)
	awsnodes.WaitAssociated(t, cloud, allocation, byName[owner])

	// Each takeover is recorded on the Service, by the node that took it.
	kit.Eventually(t, 30*time.Second, "an ElasticIPAssociated Event from each node that took the address", func(ctx context.Context) error {
		var evs corev1.EventList
		if err := k8s.List(ctx, &evs, client.InNamespace("default")); err != nil {
			return err
		}
		from := map[string]bool{}
		for _, ev := range evs.Items {
			if ev.Reason == "ElasticIPAssociated" && ev.InvolvedObject.Name == "web" {
				from[ev.Source.Host] = true
			}
		}
		if !from[owner] || !from[second] {
			return fmt.Errorf("ElasticIPAssociated Events from %v, want %s and %s", from, owner, second)
		}
		return nil
	})
}
