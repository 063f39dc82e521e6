package main

import (
	"context"
	"fmt"
	"io"
	"math/big"
	"sort"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fairlead-lb/fairlead/config/v1alpha1"
)

// writeStatus prints, for any cluster running Fairlead: pools with their usage, every
// LoadBalancer Service with its addresses and who announces them, and BGP sessions per node.
// A kind whose CRD is missing (say, BGP not installed) is skipped with a note.
func writeStatus(ctx context.Context, c client.Client, w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()

	var pools v1alpha1.IPPoolList
	if err := c.List(ctx, &pools); err != nil {
		return fmt.Errorf("listing IPPools (is Fairlead installed?): %w", err)
	}
	fmt.Fprintln(tw, "POOL\tREADY\tIPv4\tIPv6\tADDRESSES")
	for _, p := range pools.Items {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, poolReady(&p), familyUsage(p.Status.IPv4), familyUsage(p.Status.IPv6), strings.Join(p.Spec.Addresses, ","))
	}

	announced := map[string][]string{} // "ns/name" → "ip on node (protocol)"
	var anns v1alpha1.ServiceAnnouncementList
	if err := c.List(ctx, &anns); err == nil {
		for _, a := range anns.Items {
			for _, x := range a.Status.Announcements {
				where := fmt.Sprintf("%s@%s/%s", x.IP, x.Node, x.Protocol)
				if len(x.Interfaces) > 0 {
					where += "(" + strings.Join(x.Interfaces, ",") + ")"
				}
				announced[a.Namespace+"/"+a.Name] = append(announced[a.Namespace+"/"+a.Name], where)
			}
		}
	} else if !meta.IsNoMatchError(err) {
		return err
	}
	var svcs corev1.ServiceList
	if err := c.List(ctx, &svcs); err != nil {
		return err
	}
	fmt.Fprintln(tw, "\nSERVICE\tCLASS\tEXTERNAL IPS\tANNOUNCED\tSTATE")
	sort.Slice(svcs.Items, func(i, j int) bool {
		return svcs.Items[i].Namespace+"/"+svcs.Items[i].Name < svcs.Items[j].Namespace+"/"+svcs.Items[j].Name
	})
	for _, s := range svcs.Items {
		if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		key := s.Namespace + "/" + s.Name
		var ips []string
		for _, in := range s.Status.LoadBalancer.Ingress {
			ips = append(ips, in.IP+in.Hostname)
		}
		class := "-"
		if s.Spec.LoadBalancerClass != nil {
			class = *s.Spec.LoadBalancerClass
		}
		state := "pending"
		if cond := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ConditionIPAllocated); cond != nil {
			state = cond.Reason
			if cond.Status != "True" {
				state += ": " + cond.Message
			}
		}
		ann := strings.Join(announced[key], " ")
		if ann == "" {
			ann = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", key, class, orDash(strings.Join(ips, ",")), ann, state)
	}

	var peers v1alpha1.BGPPeerList
	if err := c.List(ctx, &peers); err != nil {
		if meta.IsNoMatchError(err) {
			return nil
		}
		return err
	}
	if len(peers.Items) == 0 {
		return nil
	}
	fmt.Fprintln(tw, "\nBGP PEER\tNODE\tSTATE\tPREFIXES SENT\tLAST ERROR")
	for _, p := range peers.Items {
		if len(p.Status.Nodes) == 0 {
			fmt.Fprintf(tw, "%s (%s AS%d)\t-\tno speaker reported\t-\t-\n", p.Name, p.Spec.PeerAddress, p.Spec.PeerASN)
		}
		for _, n := range p.Status.Nodes {
			fmt.Fprintf(tw, "%s (%s AS%d)\t%s\t%s\t%d\t%s\n", p.Name, p.Spec.PeerAddress, p.Spec.PeerASN, n.Node, n.State, n.PrefixesSent, orDash(n.LastError))
		}
	}
	return nil
}

// poolReady says whether the controller has seen the pool as it is now: a pool it has not
// reconciled yet (just created, or no controller running) has no condition, or one for an
// older generation.
func poolReady(p *v1alpha1.IPPool) string {
	cond := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady)
	switch {
	case cond == nil:
		return "Unknown (no status yet)"
	case cond.ObservedGeneration != 0 && cond.ObservedGeneration < p.Generation:
		return string(cond.Status) + " (stale)"
	case cond.Status != metav1.ConditionTrue:
		return string(cond.Status) + " (" + cond.Reason + ": " + cond.Message + ")"
	}
	return string(cond.Status)
}

func familyUsage(f *v1alpha1.FamilyStatus) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%d used, %s free", f.Used, shortCount(f.Free))
}

// shortCount keeps an IPv6 pool's count readable: 18446744073709551615 becomes 1.8e19.
func shortCount(n string) string {
	if len(n) <= 9 {
		return n
	}
	f, ok := new(big.Float).SetString(n)
	if !ok {
		return n
	}
	return f.Text('g', 2)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
