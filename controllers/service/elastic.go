package service

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
	"github.com/fairlead-lb/fairlead/providers"
	"github.com/fairlead-lb/fairlead/providers/describe"
	"github.com/fairlead-lb/fairlead/providers/ipam"
)

// exhaustedRetry is how often a Service waiting for a free Elastic IP looks again: addresses
// are freed (or tagged for the pool) in AWS, where no watch tells us.
const exhaustedRetry = time.Minute

// allocateElastic gives a Service that names a pool of Elastic IPs its address through the
// cloud provider. Only these Services pay for API calls; the local pools' path never does.
func (r *Reconciler) allocateElastic(ctx context.Context, svc *corev1.Service, key string, req ipam.Request, spec *v1alpha1.ElasticIPs) (ctrl.Result, error) {
	kept := ipam.IngressIPs(svc)
	fail := func(reason, format string, args ...any) (ctrl.Result, error) {
		return ctrl.Result{}, r.writeStatus(ctx, svc, kept, &ipam.Error{Reason: reason, Message: fmt.Sprintf(format, args...)})
	}
	if r.ElasticIPs == nil {
		return fail(ipam.ReasonNoEligiblePool, "pool %q hands out Elastic IPs and the controller runs without --aws-eip", req.Pool)
	}
	if err := r.State.ElasticAllows(req.Pool, req, len(kept) > 0); err != nil {
		return ctrl.Result{}, r.writeStatus(ctx, svc, kept, err)
	}
	if len(req.IPs) > 0 {
		return fail(ipam.ReasonInvalidRequest, "pool %q hands out Elastic IPs, which cannot be asked for by address; remove %s and spec.loadBalancerIP", req.Pool, v1alpha1.AnnotationIPs)
	}
	p, err := r.ElasticIPs(req.Pool, spec)
	if err != nil {
		return fail(ipam.ReasonNoEligiblePool, "pool %q: %v", req.Pool, err)
	}
	d, err := describe.Service(svc, req.NamespaceLabels, nil, nil)
	if err == nil {
		var ing providers.Ingress
		ing, err = p.Ensure(ctx, d)
		if err == nil {
			// It may have held local addresses under another pool before: those go back.
			if released := r.release(key); len(released) > 0 {
				log.FromContext(ctx).Info("released local addresses for an Elastic IP", "ips", joinAddrs(released))
			}
			return ctrl.Result{}, r.writeStatus(ctx, svc, ing.IPs, nil)
		}
	}
	reason := providers.ReasonOf(err)
	werr := r.writeStatus(ctx, svc, kept, &ipam.Error{Reason: elasticReason(reason), Message: err.Error()})
	switch reason {
	case providers.ReasonInvalidService:
		return ctrl.Result{}, werr // waits for a change to the Service
	case providers.ReasonExhausted:
		return ctrl.Result{RequeueAfter: exhaustedRetry}, werr
	}
	// The SDK already retried; the work queue's backoff spaces further attempts.
	if werr != nil {
		return ctrl.Result{}, werr
	}
	return ctrl.Result{}, err
}

// elasticReason maps a provider's reason onto the condition reasons Services already use.
func elasticReason(reason string) string {
	switch reason {
	case providers.ReasonInvalidService:
		return ipam.ReasonInvalidRequest
	case providers.ReasonExhausted:
		return ipam.ReasonPoolExhausted
	}
	return reason
}

// leaveElastic releases the Elastic IP of a Service that now takes local addresses (its pool
// annotation changed): once the local pools gave it addresses, the status shows an address
// they do not hold, and that one is an Elastic IP.
func (r *Reconciler) leaveElastic(ctx context.Context, svc *corev1.Service, key string, ips []netip.Addr, allocErr error) error {
	if allocErr != nil || len(ips) == 0 {
		return nil
	}
	for _, a := range ipam.IngressIPs(svc) {
		if !slices.Contains(ips, a) {
			_, err := r.releaseElastic(ctx, svc, key)
			return err
		}
	}
	return nil
}

// releaseElastic gives back the Service's Elastic IP, if it holds one (found by its tags, so
// also one whose address never made it into the status), and returns the addresses its
// status showed.
func (r *Reconciler) releaseElastic(ctx context.Context, svc *corev1.Service, key string) ([]netip.Addr, error) {
	held := ipam.IngressIPs(svc)
	p, err := r.ElasticIPs("", &v1alpha1.ElasticIPs{Allocate: v1alpha1.ElasticIPsOnDemand})
	if err != nil {
		return nil, err
	}
	if err := p.Release(ctx, key); err != nil {
		if providers.ReasonOf(err) == providers.ReasonPermissionDenied {
			r.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, providers.ReasonPermissionDenied, "Release", "%s", err.Error())
		}
		return nil, fmt.Errorf("releasing Elastic IP: %w", err)
	}
	return held, nil
}
