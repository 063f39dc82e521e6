// Package cloud releases what a provider holds in a cloud for Services that are gone: a
// Collector runs once at start, on the leader, for what Services deleted while the controller
// was down left behind. (The Services themselves are controllers/service's, whichever
// provider serves them; in fairlead-ccm, the upstream service controller's.)
package cloud

import (
	"context"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fairlead-lb/fairlead/providers"
)

// Collector releases, once at start, what a provider holds for Services that are gone (deleted
// while no controller ran, or before a crashed controller removed their finalizer's work) or
// that no longer use it. It runs on the leader only.
type Collector struct {
	Name     string
	Provider providers.Provider
	// Reader reads the API directly, not a cache that may not have caught up yet: a Service
	// wrongly thought gone would lose its load balancer.
	Reader client.Reader
	// Keep reports whether the existing Service svc still uses what the provider holds for it.
	Keep func(svc *corev1.Service) bool
	// Backoff between failed passes (default 5s, doubling to 5 minutes).
	Backoff time.Duration
}

// NeedLeaderElection: only the leader releases.
func (c *Collector) NeedLeaderElection() bool { return true }

// Start runs passes until one succeeds.
func (c *Collector) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("collector").WithValues("provider", c.Name)
	wait := c.Backoff
	if wait <= 0 {
		wait = 5 * time.Second
	}
	for {
		released, err := c.pass(ctx)
		if err == nil {
			logger.Info("released what deleted Services left behind", "services", released)
			return nil
		}
		logger.Error(err, "collecting leftovers; retrying", "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Minute)
	}
}

func (c *Collector) pass(ctx context.Context) ([]string, error) {
	keys, err := c.Provider.Owned(ctx)
	if err != nil {
		return nil, err
	}
	var released []string
	for _, k := range keys {
		ns, name, _ := strings.Cut(k, "/")
		var svc corev1.Service
		err := c.Reader.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &svc)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return released, err
		case c.Keep(&svc):
			continue
		}
		if err := c.Provider.Release(ctx, k); err != nil {
			return released, err
		}
		released = append(released, k)
	}
	return released, nil
}
