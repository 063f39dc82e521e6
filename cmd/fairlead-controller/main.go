// Command fairlead-controller allocates external addresses to LoadBalancer Services.
package main

import (
	"flag"
	"os"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/fairlead-lb/fairlead/controllers"
)

func main() {
	var (
		o                                    controllers.Options
		metricsAddr, probeAddr, leaderNS     string
		pprofAddr                            string
		leaderElect                          bool
		leaseDuration, renewDeadline, period time.Duration
		qps                                  float64
		burst                                int
	)
	flag.BoolVar(&o.DefaultClass, "default-class", true, "Handle LoadBalancer Services that have no spec.loadBalancerClass (Services of other classes are never touched).")
	flag.IntVar(&o.Workers, "workers", 8, "Services reconciled in parallel.")
	flag.DurationVar(&o.PoolStatusInterval, "pool-status-interval", time.Second, "Least time between two writes of one IPPool's usage to its status.")
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":7472", "Address of the Prometheus metrics endpoint ('0' disables it).")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":7473", "Address of the /healthz and /readyz endpoints.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "", "Address of Go's pprof endpoints (off by default).")
	flag.BoolVar(&leaderElect, "leader-elect", true, "Elect a leader through a Lease, so that replicas never allocate at once.")
	flag.StringVar(&leaderNS, "leader-election-namespace", "", "Namespace of the Lease (default: the Pod's namespace, else kube-system).")
	flag.DurationVar(&leaseDuration, "leader-lease-duration", 15*time.Second, "How long a crashed leader's Lease blocks the other replicas.")
	flag.DurationVar(&renewDeadline, "leader-renew-deadline", 10*time.Second, "How long the leader tries to renew before giving up leadership.")
	flag.DurationVar(&period, "leader-retry-period", 2*time.Second, "How often replicas try to take or renew the Lease.")
	flag.Float64Var(&qps, "kube-api-qps", 200, "Requests per second to the apiserver (client-side limit).")
	flag.IntVar(&burst, "kube-api-burst", 400, "Burst of requests to the apiserver.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")

	cfg, err := ctrl.GetConfig()
	if err != nil {
		log.Error(err, "no kubeconfig")
		os.Exit(1)
	}
	cfg.QPS, cfg.Burst = float32(qps), burst
	if leaderElect && leaderNS == "" {
		if _, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err != nil {
			leaderNS = "kube-system"
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  controllers.NewScheme(),
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  probeAddr,
		PprofBindAddress:        pprofAddr,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "fairlead-controller.fairlead.dev",
		LeaderElectionNamespace: leaderNS,
		LeaseDuration:           &leaseDuration,
		RenewDeadline:           &renewDeadline,
		RetryPeriod:             &period,
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
	log.Info("starting", "defaultClass", o.DefaultClass, "leaderElect", leaderElect)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "manager stopped")
		os.Exit(1)
	}
}
