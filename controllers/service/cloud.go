package service

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/providers"
	"github.com/fairlead-lb/fairlead/providers/describe"
)

// ensureCloud converges a Service's own cloud load balancer: it describes the Service, its
// Nodes and endpoints to the provider and records where clients reach it.
func (r *Reconciler) ensureCloud(ctx context.Context, svc *corev1.Service) (ctrl.Result, error) {
	d, err := r.describe(ctx, svc)
	var ing providers.Ingress
	if err == nil {
		ing, err = r.Cloud.Ensure(ctx, d)
	}
	if werr := r.write(ctx, svc, outcome{Cloud: ing, Err: err}); werr != nil {
		return ctrl.Result{}, werr
	}
	if err != nil {
		if providers.ReasonOf(err) == providers.ReasonInvalidService {
			return ctrl.Result{}, nil // retried when the Service changes
		}
		// Throttling and 5xx were already retried by the SDK; the work queue's exponential
		// backoff spaces the next attempts, so a long outage does not hammer the API.
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: r.Resync}, nil
}

func (r *Reconciler) describe(ctx context.Context, svc *corev1.Service) (*providers.Service, error) {
	var nodes corev1.NodeList
	if err := r.Client.List(ctx, &nodes); err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	var slices discoveryv1.EndpointSliceList
	if err := r.Client.List(ctx, &slices, client.InNamespace(svc.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: svc.Name}); err != nil {
		return nil, fmt.Errorf("listing endpoint slices: %w", err)
	}
	return describe.Service(svc, nil, ptrs(nodes.Items), ptrs(slices.Items))
}

func ingress(ing providers.Ingress) []corev1.LoadBalancerIngress {
	var out []corev1.LoadBalancerIngress
	vip := corev1.LoadBalancerIPModeVIP
	for _, a := range ing.IPs {
		out = append(out, corev1.LoadBalancerIngress{IP: a.String(), IPMode: &vip})
	}
	if ing.Hostname != "" {
		out = append(out, corev1.LoadBalancerIngress{Hostname: ing.Hostname})
	}
	return out
}

func where(ing providers.Ingress) string {
	var parts []string
	if ing.Hostname != "" {
		parts = append(parts, ing.Hostname)
	}
	for _, a := range ing.IPs {
		parts = append(parts, a.String())
	}
	if len(parts) == 0 {
		return "no address"
	}
	return strings.Join(parts, ", ")
}

func ptrs[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}
