package main

// This test runs the real fairlead-speaker binary with --aws-eip (and nothing else: it makes
// only AWS API calls, so it needs no network namespace) against a real kube-apiserver and moto,
// to prove the component's wiring: flags, informers, IPPools, the endpoint override.

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
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
	"github.com/fairlead-lb/fairlead/test/awsapi"
	"github.com/fairlead-lb/fairlead/test/controlplane"
)

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestSpeakerAssociatesElasticIP(t *testing.T) {
	ctx := context.Background()
	ctrllog.SetLogger(logr.Discard())
	awsapi.Env(t)
	moto := awsapi.StartMoto(t)
	// Never real AWS: the speaker gets moto's endpoint on 127.0.0.1 and the dummy credentials
	// awsapi.Env put in the environment it inherits.
	if u, err := url.Parse(moto.URL); err != nil || u.Hostname() != "127.0.0.1" || os.Getenv("AWS_ACCESS_KEY_ID") != "testing" {
		t.Fatalf("refusing to run the speaker against %q without the emulator's credentials", moto.URL)
	}
	dir := t.TempDir()
	binary := filepath.Join(dir, "fairlead-speaker")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		t.Fatalf("building fairlead-speaker: %v\n%s", err, out)
	}
	env, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := env.Kubeconfig(kubeconfig); err != nil {
		t.Fatal(err)
	}
	k8s := env.Client

	aws_, err := fairaws.NewClients(ctx, fairaws.Config{Endpoint: moto.URL})
	if err != nil {
		t.Fatal(err)
	}
	images, err := aws_.EC2.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil || len(images.Images) == 0 {
		t.Fatalf("moto has no images: %v", err)
	}
	run, err := aws_.EC2.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: images.Images[0].ImageId,
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: ec2types.InstanceTypeT3Micro})
	if err != nil {
		t.Fatal(err)
	}
	inst := run.Instances[0]
	eni := aws.ToString(inst.NetworkInterfaces[0].NetworkInterfaceId)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"},
		Spec: corev1.NodeSpec{ProviderID: "aws:///us-east-1a/" + aws.ToString(inst.InstanceId)}}
	if err := k8s.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	node.Status = corev1.NodeStatus{
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: aws.ToString(inst.PrivateIpAddress)}},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
	}
	if err := k8s.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}

	// The controller's part, done by hand: an Elastic IP tagged for the Service, in its status.
	addr, err := aws_.EC2.AllocateAddress(ctx, &ec2.AllocateAddressInput{Domain: ec2types.DomainTypeVpc,
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeElasticIp, Tags: []ec2types.Tag{
			{Key: aws.String(fairaws.TagCluster), Value: aws.String("test-cluster")},
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

	out := &lockedBuffer{}
	cmd := exec.Command(binary, "--kubeconfig", kubeconfig, "--node-name", "node1", "--l2=false", "--aws-eip",
		"--aws-endpoint", moto.URL, "--aws-cluster-name", "test-cluster", "--metrics-bind-address", "0")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("fairlead-speaker output:\n%s", out.String())
		}
	})

	deadline := time.Now().Add(time.Minute)
	for {
		got, err := aws_.EC2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{AllocationIds: []string{aws.ToString(addr.AllocationId)}})
		if err == nil && len(got.Addresses) == 1 && aws.ToString(got.Addresses[0].NetworkInterfaceId) == eni &&
			aws.ToString(got.Addresses[0].PrivateIpAddress) == aws.ToString(inst.PrivateIpAddress) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the speaker did not associate %s with %s (%s): %+v, %v", aws.ToString(addr.PublicIp), eni,
				aws.ToString(inst.PrivateIpAddress), fmt.Sprint(got), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The takeover is recorded on the Service.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var evs corev1.EventList
		if err := k8s.List(ctx, &evs, client.InNamespace("default")); err == nil {
			for _, ev := range evs.Items {
				if ev.Reason == "ElasticIPAssociated" && ev.InvolvedObject.Name == "web" && ev.Source.Host == "node1" {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ElasticIPAssociated Event on the Service")
		}
	}
}
