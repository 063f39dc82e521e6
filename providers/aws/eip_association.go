package aws

import (
	"context"
	"net/netip"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/go-logr/logr"

	"github.com/fairlead-lb/fairlead/providers"
)

// Attachment is where an Elastic IP points: a private address of a network interface.
type Attachment struct {
	NetworkInterfaceID string
	PrivateIP          netip.Addr
}

// InterfaceFor finds the network interface of an instance that holds privateIP: what the
// speaker of the elected node passes to Associate.
func (e *EIP) InterfaceFor(ctx context.Context, instanceID string, privateIP netip.Addr) (Attachment, error) {
	out, err := e.c.EC2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{Filters: []ec2types.Filter{
		{Name: aws.String("attachment.instance-id"), Values: []string{instanceID}},
		{Name: aws.String("addresses.private-ip-address"), Values: []string{privateIP.String()}},
	}})
	if err != nil {
		return Attachment{}, wrap(err, "finding the network interface of %s with address %s", instanceID, privateIP)
	}
	if len(out.NetworkInterfaces) == 0 {
		return Attachment{}, providers.Errorf(providers.ReasonMisconfigured, "instance %s has no network interface with private address %s", instanceID, privateIP)
	}
	return Attachment{NetworkInterfaceID: aws.ToString(out.NetworkInterfaces[0].NetworkInterfaceId), PrivateIP: privateIP}, nil
}

// Where returns the attachment of the Service's Elastic IP ip, and false when it is not
// associated.
func (e *EIP) Where(ctx context.Context, ip netip.Addr) (Attachment, bool, error) {
	a, err := e.ours(ctx, ip)
	if err != nil || a.associationID == "" {
		return Attachment{}, false, err
	}
	priv, _ := netip.ParseAddr(a.privateIP)
	return Attachment{NetworkInterfaceID: a.eni, PrivateIP: priv}, true, nil
}

// Associate points ip at the attachment, taking it from wherever it was: this is the failover
// move, one API call, after which AWS routes the address to the new node. It does nothing when
// the address already points there.
func (e *EIP) Associate(ctx context.Context, ip netip.Addr, to Attachment) error {
	a, err := e.ours(ctx, ip)
	if err != nil {
		return err
	}
	if a.eni == to.NetworkInterfaceID && a.privateIP == to.PrivateIP.String() {
		return nil
	}
	if _, err := e.c.EC2.AssociateAddress(ctx, &ec2.AssociateAddressInput{
		AllocationId:       aws.String(a.allocationID),
		NetworkInterfaceId: aws.String(to.NetworkInterfaceID),
		PrivateIpAddress:   aws.String(to.PrivateIP.String()),
		// Without it AWS refuses to move an address that is associated elsewhere, and a
		// failover is exactly that.
		AllowReassociation: aws.Bool(true),
	}); err != nil {
		return wrap(err, "associating Elastic IP %s with %s (%s)", ip, to.NetworkInterfaceID, to.PrivateIP)
	}
	logr.FromContextOrDiscard(ctx).Info("associated Elastic IP", "ip", ip, "networkInterface", to.NetworkInterfaceID,
		"privateIP", to.PrivateIP, "from", a.eni)
	return nil
}

// Disassociate detaches ip if it is associated with from (so that a node stepping down never
// detaches an address another node has already taken over).
func (e *EIP) Disassociate(ctx context.Context, ip netip.Addr, from Attachment) error {
	a, err := e.ours(ctx, ip)
	if err != nil {
		return err
	}
	if a.associationID == "" || a.eni != from.NetworkInterfaceID || a.privateIP != from.PrivateIP.String() {
		return nil
	}
	if _, err := e.c.EC2.DisassociateAddress(ctx, &ec2.DisassociateAddressInput{AssociationId: aws.String(a.associationID)}); err != nil &&
		errCode(err) != "InvalidAssociationID.NotFound" {
		return wrap(err, "disassociating Elastic IP %s", ip)
	}
	return nil
}

// ours looks up an Elastic IP this cluster holds for some Service.
func (e *EIP) ours(ctx context.Context, ip netip.Addr) (elasticIP, error) {
	as, err := e.describe(ctx, ec2types.Filter{Name: aws.String("public-ip"), Values: []string{ip.String()}})
	if err != nil {
		return elasticIP{}, err
	}
	for _, a := range as {
		if tagsMatch(a.tags, e.opts.ClusterName, "") && a.tags[TagService] != "" {
			return a, nil
		}
	}
	return elasticIP{}, providers.Errorf(providers.ReasonConflict, "Elastic IP %s is not one this cluster (%s) holds for a Service", ip, e.opts.ClusterName)
}

// Held returns the Elastic IPs this cluster holds, each with the Service it is tagged for
// ("namespace/name"). Speakers use it to recognise the addresses they must move where no
// IPPool says so: in cloud-controller-manager mode a Service's address comes from the
// provider, not from a pool.
func (e *EIP) Held(ctx context.Context) (map[netip.Addr]string, error) {
	as, err := e.describe(ctx, tagFilter(TagCluster, e.opts.ClusterName))
	if err != nil {
		return nil, err
	}
	out := map[netip.Addr]string{}
	for _, a := range as {
		if k := a.tags[TagService]; k != "" {
			out[a.ip] = k
		}
	}
	return out, nil
}

// NewAssociator returns the Elastic IP provider for the speaker's side: it only finds
// interfaces and moves this cluster's addresses (Held, InterfaceFor, Where, Associate,
// Disassociate), so it needs no pool settings.
func NewAssociator(c *Clients, cluster string) (*EIP, error) {
	if err := validClusterName(cluster); err != nil {
		return nil, err
	}
	return &EIP{c: c, opts: EIPOptions{ClusterName: cluster}}, nil
}
