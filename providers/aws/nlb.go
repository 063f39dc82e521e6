package aws

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-logr/logr"

	"github.com/fairlead-lb/fairlead/providers"
)

// NLBOptions configure the NLB mode.
type NLBOptions struct {
	// ClusterName tags everything created; two clusters in one account must use different ones.
	ClusterName string
	// VPCID is the cluster's VPC: target groups and security groups live there.
	VPCID string
	// Subnets for every load balancer. Empty: the VPC's subnets tagged kubernetes.io/role/elb
	// (internet-facing) or kubernetes.io/role/internal-elb (internal), one per zone, as the AWS
	// cloud provider does.
	Subnets []string
	// NodeSecurityGroupID, when set, is the security group of the nodes (or, for ip targets,
	// of the pods): Fairlead adds rules letting each load balancer's group reach its target
	// and health check ports, and removes them with the load balancer. Empty: the operator
	// opens those ports.
	NodeSecurityGroupID string
}

// NLB gives each Service its own Network Load Balancer: one listener per port, a target group
// per listener, and a security group enforcing loadBalancerSourceRanges.
//
// Ensure converges in an order that leaves nothing unfindable whatever step fails: the security
// group, the load balancer and the target groups are created with their tags in the create
// call itself (AWS applies them atomically), under names derived from the cluster and Service,
// so a restarted controller finds each of them by name and adopts it instead of creating a
// second one.
type NLB struct {
	c    *Clients
	opts NLBOptions
}

var _ providers.Provider = (*NLB)(nil)

// NewNLB returns the NLB provider.
func NewNLB(c *Clients, o NLBOptions) (*NLB, error) {
	if err := validClusterName(o.ClusterName); err != nil {
		return nil, err
	}
	if o.VPCID == "" {
		return nil, fmt.Errorf("aws: NLB mode needs the cluster's VPC ID")
	}
	return &NLB{c: c, opts: o}, nil
}

// Ensure implements providers.Provider.
func (p *NLB) Ensure(ctx context.Context, svc *providers.Service) (providers.Ingress, error) {
	d, err := desiredNLB(p.opts.ClusterName, svc)
	if err != nil {
		return providers.Ingress{}, err
	}
	log := logr.FromContextOrDiscard(ctx).WithValues("service", d.key, "loadBalancer", d.name)
	ctx = logr.NewContext(ctx, log)

	subnets, err := p.subnets(ctx, d)
	if err != nil {
		return providers.Ingress{}, err
	}
	frontend, err := p.frontendGroups(ctx, d)
	if err != nil {
		return providers.Ingress{}, err
	}
	// Fairlead's own group exists even when the Service brings its own: it is the record
	// through which a restarted controller finds what the Service has (TagNames).
	sg, recorded, err := p.ensureSecurityGroup(ctx, d)
	if err != nil {
		return providers.Ingress{}, err
	}
	var backend []nodePort
	if d.manageBackend {
		backend = d.nodePorts()
	}
	if err := p.syncNodeRules(ctx, sg.id, backend); err != nil {
		return providers.Ingress{}, err
	}
	if len(frontend) == 0 {
		frontend = []string{sg.id}
	}
	lb, err := p.ensureLoadBalancer(ctx, d, subnets, frontend, recorded)
	if err != nil {
		return providers.Ingress{}, err
	}
	// The load balancers under other names are gone: only the current name stays recorded.
	if err := p.syncEC2Tags(ctx, sg.id, sg.tags, p.sgTags(d, d.name)); err != nil {
		return providers.Ingress{}, err
	}
	groups, err := p.ensureTargetGroups(ctx, d)
	if err != nil {
		return providers.Ingress{}, err
	}
	if err := p.ensureListeners(ctx, d, lb.arn, groups); err != nil {
		return providers.Ingress{}, err
	}
	// Only now are the old target groups detached from every listener.
	if err := p.deleteStaleTargetGroups(ctx, d, groups); err != nil {
		return providers.Ingress{}, err
	}
	return providers.Ingress{Hostname: lb.dnsName}, nil
}

// Update converges the Service's load balancer as Ensure does, if it has one, and creates
// nothing: the cloud-controller-manager's node worker calls it (UpdateLoadBalancer) from an old
// copy of the Service, also after Release deleted everything, and creating then would leave a
// load balancer that nothing deletes.
func (p *NLB) Update(ctx context.Context, svc *providers.Service) error {
	lbs, err := p.existing(ctx, svc.Key())
	if err != nil || len(lbs) == 0 {
		return err
	}
	_, err = p.Ensure(ctx, svc)
	return err
}

// existing finds the Service's load balancers under any name it had: Fairlead's, or one of the
// Service's choosing, recorded on its security group (TagNames).
func (p *NLB) existing(ctx context.Context, key string) ([]*loadBalancer, error) {
	var recorded []string
	sgs, err := p.taggedSecurityGroups(ctx, key)
	if err != nil {
		return nil, err
	}
	for _, g := range sgs {
		recorded = append(recorded, strings.Fields(g.tags[TagNames])...)
	}
	return p.findLoadBalancers(ctx, key, serviceHash(p.opts.ClusterName, key), "", recorded)
}

// Release implements providers.Provider. It deletes the load balancer first (AWS deletes its
// listeners with it), then the target groups it no longer uses, then the security group.
func (p *NLB) Release(ctx context.Context, key string) error {
	hash := serviceHash(p.opts.ClusterName, key)
	log := logr.FromContextOrDiscard(ctx).WithValues("service", key, "loadBalancer", loadBalancerName(hash))
	ctx = logr.NewContext(ctx, log)

	lbs, err := p.existing(ctx, key)
	if err != nil {
		return err
	}
	for _, lb := range lbs {
		if err := p.deleteLoadBalancer(ctx, lb); err != nil {
			return err
		}
	}
	groups, err := p.ownedTargetGroups(ctx, key, hash)
	if err != nil {
		return err
	}
	var errs []error
	for _, g := range groups {
		errs = append(errs, p.deleteTargetGroup(ctx, g))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return p.deleteSecurityGroup(ctx, key, hash)
}

// Owned implements providers.Provider: the Services of this cluster that have a load balancer,
// a target group or a security group tagged for them.
func (p *NLB) Owned(ctx context.Context) ([]string, error) {
	var keys []string
	lbs, err := p.taggedLoadBalancers(ctx)
	if err != nil {
		return nil, err
	}
	keys = append(keys, lbs...)
	tgs, err := p.allTargetGroups(ctx, namePrefix)
	if err != nil {
		return nil, err
	}
	tags, err := p.elbTags(ctx, arnsOf(tgs))
	if err != nil {
		return nil, err
	}
	for _, t := range tags {
		if tagsMatch(t, p.opts.ClusterName, "") && t[TagService] != "" {
			keys = append(keys, t[TagService])
		}
	}
	sgs, err := p.taggedSecurityGroups(ctx, "")
	if err != nil {
		return nil, err
	}
	for _, g := range sgs {
		keys = append(keys, g.key)
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
}
