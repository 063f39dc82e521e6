package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// FencedWrites counts writes refused because this replica could not prove it held the leader
// Lease (see controllers/fence): non-zero only after a pause past the Lease.
var FencedWrites = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "fairlead_fenced_writes_total",
	Help: "Writes to the API refused because the leader Lease was not provably held.",
})

func init() { metrics.Registry.MustRegister(FencedWrites) }

// The metrics endpoint reviews every scraper's token and its right to the path
// (cmd/fairlead-controller's --metrics-secure).
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
