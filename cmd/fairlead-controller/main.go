// Command fairlead-controller allocates external addresses to LoadBalancer Services.
package main

import (
	"flag"
	"os"
	"strings"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/fairlead-lb/fairlead/config/scheme"
	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/controllers"
	"github.com/fairlead-lb/fairlead/controllers/fence"
)

const leaderID = "fairlead-controller.fairlead.dev"

func main() {
	var (
		o                                    controllers.Options
		metricsAddr, probeAddr, leaderNS     string
		pprofAddr                            string
		metricsOpts                          metricsserver.Options
		leaderElect                          bool
		leaseDuration, renewDeadline, period time.Duration
		qps                                  float64
		burst                                int
	)
	flag.BoolVar(&o.MetalLBPoolAnnotation, "metallb-pool-annotation", false, "Also record each Service's pool in MetalLB's annotation metallb.io/ip-allocated-from-pool (for dashboards and tools of a MetalLB installation).")
	flag.BoolVar(&o.DefaultClass, "default-class", true, "Handle LoadBalancer Services that have no spec.loadBalancerClass (Services of other classes are never touched).")
	flag.IntVar(&o.Workers, "workers", 8, "Services reconciled in parallel.")
	flag.DurationVar(&o.PoolStatusInterval, "pool-status-interval", time.Second, "Least time between two writes of one IPPool's usage to its status.")
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":7472", "Address of the Prometheus metrics endpoint ('0' disables it).")
	flag.BoolVar(&metricsOpts.SecureServing, "metrics-secure", true, "Serve metrics over HTTPS to clients whose bearer token the apiserver authenticates and authorizes for GET /metrics (false: plain HTTP to anyone).")
	flag.StringVar(&metricsOpts.CertDir, "metrics-cert-dir", "", "Directory of the metrics server's certificate and key (default: a self-signed certificate made at start).")
	flag.StringVar(&metricsOpts.CertName, "metrics-cert-name", "tls.crt", "Certificate file in --metrics-cert-dir.")
	flag.StringVar(&metricsOpts.KeyName, "metrics-key-name", "tls.key", "Key file in --metrics-cert-dir.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":7473", "Address of the /healthz and /readyz endpoints.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "", "Address of Go's pprof endpoints (off by default).")
	flag.BoolVar(&leaderElect, "leader-elect", true, "Elect a leader through a Lease, so that replicas never allocate at once.")
	flag.StringVar(&leaderNS, "leader-election-namespace", "", "Namespace of the Lease (default: the Pod's namespace, else kube-system).")
	flag.DurationVar(&leaseDuration, "leader-lease-duration", 15*time.Second, "How long a crashed leader's Lease blocks the other replicas.")
	flag.DurationVar(&renewDeadline, "leader-renew-deadline", 10*time.Second, "How long the leader tries to renew before giving up leadership.")
	flag.DurationVar(&period, "leader-retry-period", 2*time.Second, "How often replicas try to take or renew the Lease.")
	// No client-side limit by default, as controller-runtime's GetConfig has it: the apiserver's
	// priority and fairness shares it among clients by concurrency, and the workers already
	// bound this one's (one write in flight each). A fixed rate only made a backlog wait.
	flag.Float64Var(&qps, "kube-api-qps", -1, "Requests per second to the apiserver (client-side limit; negative: none, the apiserver's priority and fairness alone).")
	flag.IntVar(&burst, "kube-api-burst", 400, "Burst of requests to the apiserver (with a positive --kube-api-qps).")
	var awsOpts controllers.AWSOptions
	var awsSubnets string
	flag.BoolVar(&awsOpts.NLB, "aws-nlb", false, "Give Services of loadBalancerClass "+v1alpha1.AWSNLBClass+" an AWS Network Load Balancer each.")
	flag.BoolVar(&awsOpts.ElasticIPs, "aws-eip", false, "Serve IPPools with spec.aws.elasticIPs (AWS Elastic IPs).")
	flag.StringVar(&awsOpts.Config.Region, "aws-region", "", "AWS region (default: the SDK's chain: $AWS_REGION, shared config, instance metadata).")
	flag.StringVar(&awsOpts.Config.Endpoint, "aws-endpoint", "", "Endpoint for every AWS API (a VPC endpoint, or an emulator in tests); default: AWS' own. Credentials always come from the SDK's default chain.")
	flag.StringVar(&awsOpts.ClusterName, "aws-cluster-name", "", "Cluster name tagging everything created in AWS (required with --aws-nlb or --aws-eip; unique per account).")
	flag.StringVar(&awsOpts.NLBOptions.VPCID, "aws-vpc-id", "", "The cluster's VPC (required with --aws-nlb).")
	flag.StringVar(&awsSubnets, "aws-subnets", "", "Comma-separated subnets for every NLB (default: the VPC's subnets tagged kubernetes.io/role/elb or kubernetes.io/role/internal-elb).")
	flag.StringVar(&awsOpts.NLBOptions.NodeSecurityGroupID, "aws-node-security-group", "", "The nodes' security group, where each NLB's target ports are opened (default: none; open them yourself).")
	flag.IntVar(&awsOpts.Workers, "aws-nlb-workers", 4, "NLB Services reconciled in parallel.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	if awsOpts.NLB || awsOpts.ElasticIPs {
		for _, sn := range strings.Split(awsSubnets, ",") {
			if sn = strings.TrimSpace(sn); sn != "" {
				awsOpts.NLBOptions.Subnets = append(awsOpts.NLBOptions.Subnets, sn)
			}
		}
		o.AWS = &awsOpts
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		log.Error(err, "no kubeconfig")
		os.Exit(1)
	}
	cfg.QPS, cfg.Burst = float32(qps), burst
	if leaderElect && leaderNS == "" {
		leaderNS = "kube-system"
		if ns, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
			leaderNS = strings.TrimSpace(string(ns))
		}
	}
	if leaderElect {
		// Every client the manager builds, the elector's included, goes through the fence: no
		// write leaves once the Lease is not provably ours (a leader paused past its Lease).
		f := fence.New(leaderNS, leaderID, fence.OnRefused(controllers.FencedWrites.Inc))
		cfg.Wrap(f.Wrap)
	}
	metricsOpts.BindAddress = metricsAddr
	if metricsOpts.SecureServing {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme.New(),
		Metrics:                 metricsOpts,
		HealthProbeBindAddress:  probeAddr,
		PprofBindAddress:        pprofAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        leaderID,
		LeaderElectionNamespace: leaderNS,
		// The process ends when the manager stops, so it can hand the Lease over at once:
		// a rolling update then waits for no Lease to expire.
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &leaseDuration,
		RenewDeadline:                 &renewDeadline,
		RetryPeriod:                   &period,
	})
	if err != nil {
		log.Error(err, "creating manager")
		os.Exit(1)
	}
	if err := controllers.Setup(mgr, o); err != nil {
		log.Error(err, "setting up controllers")
		os.Exit(1)
	}
	_ = mgr.AddHealthzCheck("healthz", healthz.Ping)
	_ = mgr.AddReadyzCheck("readyz", healthz.Ping)
	log.Info("starting", "defaultClass", o.DefaultClass, "leaderElect", leaderElect, "awsNLB", awsOpts.NLB, "awsEIP", awsOpts.ElasticIPs)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "manager stopped")
		os.Exit(1)
	}
}
